# The study's figures and tables (from results/metrics.csv), and the analyses of the data
# (annotation styles) and of the models (linear mode connectivity).

from lesionsoup.core.metrics import metric_label
from lesionsoup.plan import averaging
from lesionsoup.plan import report as report_config

REPORT = report_config.report_settings(config)
QUALITATIVE_MODELS = report_config.qualitative_models(config, EVALUATED)


rule costs:
    input:
        metrics=paths.METRICS,
        notes=paths.METRICS_CONVENTIONS,
        # the training, merging and ensemble jobs' own records: a rerun of one reruns this
        records=evaluation.cost_records(config, EVALUATED),
    output:
        paths.COSTS,
    log:
        paths.log("report/costs"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/costs.py"


rule uncertainty:
    input:
        evaluations=evaluation.evaluation_files(config, EVALUATED),
        models=paths.EVALUATED_MODELS,
    output:
        intervals=report(
            paths.METRICS_CI,
            caption="../report/metrics_ci.rst",
            category="Uncertainty",
        ),
        comparisons=report(
            paths.COMPARISONS,
            caption="../report/comparisons.rst",
            category="Uncertainty",
        ),
        replicates=paths.BOOTSTRAP,
    log:
        paths.log("report/uncertainty"),
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        mem_mb=4000,
        runtime=cluster.scaled_runtime(30, config),
    params:
        bootstrap=config["evaluation"]["bootstrap"],
        metric=REPORT["metric"],
        metric_label=metric_label(REPORT["metric"]),  # for the captions
        pairs=json.dumps(
            evaluation.named_comparisons(config, EVALUATED), sort_keys=True
        ),
    shell:
        "lesionsoup uncertainty {input.evaluations} --models {input.models}"
        " --metric {params.metric} --resamples {params.bootstrap[resamples]}"
        " --confidence {params.bootstrap[confidence]} --seed {params.bootstrap[seed]}"
        " --alpha {params.bootstrap[alpha]} --pairs {params.pairs:q}"
        " --intervals {output.intervals} --comparisons {output.comparisons}"
        " --replicates {output.replicates} --threads {threads} > {log} 2>&1"


rule report_cross_dataset:
    input:
        metrics=paths.METRICS,
        replicates=paths.BOOTSTRAP,
    output:
        heatmap=report(
            f"{paths.REPORT}/cross_dataset.png",
            caption="../report/cross_dataset.rst",
            category="Cross-dataset",
        ),
        heatmap_table=f"{paths.REPORT}/cross_dataset.csv",
        fine_coarse=report(
            f"{paths.REPORT}/fine_coarse.png",
            caption="../report/fine_coarse.rst",
            category="Cross-dataset",
        ),
        fine_coarse_table=f"{paths.REPORT}/fine_coarse.csv",
    log:
        paths.log("report/cross_dataset"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
        metric_label=metric_label(REPORT["metric"]),  # for the captions
        method=REPORT["method"],
        coarse=REPORT["coarse"],
        confidence=config["evaluation"]["bootstrap"]["confidence"],  # for the captions
    script:
        "../scripts/report_cross_dataset.py"


rule report_methods:
    input:
        metrics=paths.METRICS,
        costs=paths.COSTS,
        replicates=paths.BOOTSTRAP,
        comparisons=paths.COMPARISONS,
    output:
        comparison=report(
            f"{paths.REPORT}/methods.png",
            caption="../report/methods.rst",
            category="Methods",
        ),
        comparison_table=f"{paths.REPORT}/methods.csv",
        cost_gain=report(
            f"{paths.REPORT}/cost_gain.png",
            caption="../report/cost_gain.rst",
            category="Methods",
        ),
        cost_gain_table=f"{paths.REPORT}/cost_gain.csv",
        significance=report(
            f"{paths.REPORT}/significance.csv",
            caption="../report/significance.rst",
            category="Methods",
        ),
        seed_noise=report(
            f"{paths.REPORT}/seed_noise.csv",
            caption="../report/seed_noise.rst",
            category="Methods",
        ),
        seed_noise_figure=report(
            f"{paths.REPORT}/seed_noise.png",
            caption="../report/seed_noise.rst",
            category="Methods",
        ),
    log:
        paths.log("report/methods"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
        metric_label=metric_label(REPORT["metric"]),  # for the captions
        alpha=config["evaluation"]["bootstrap"]["alpha"],
        confidence=f"{config['evaluation']['bootstrap']['confidence']:.0%}",  # for the captions
        resamples=config["evaluation"]["bootstrap"]["resamples"],  # for the captions
        tests=TESTS,  # a configured test set without scores: named, not drawn
    script:
        "../scripts/report_methods.py"


rule report_pr_curves:
    input:
        metrics=paths.METRICS,
        notes=paths.METRICS_CONVENTIONS,
        replicates=paths.BOOTSTRAP,
    output:
        figure=report(
            f"{paths.REPORT}/pr_curves.png",
            caption="../report/pr_curves.rst",
            category="Cross-dataset",
        ),
        table=f"{paths.REPORT}/pr_curves.csv",
    log:
        paths.log("report/pr_curves"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
        metric_label=metric_label(REPORT["metric"]),  # for the captions
        top=REPORT["pr_top"],
        confidence=config["evaluation"]["bootstrap"]["confidence"],  # for the caption
    script:
        "../scripts/report_pr_curves.py"


rule report_reliability:
    input:
        metrics=paths.METRICS,
        notes=paths.METRICS_CONVENTIONS,
        intervals=paths.METRICS_CI,
    output:
        figure=report(
            f"{paths.REPORT}/reliability.png",
            caption="../report/reliability.rst",
            category="Calibration",
        ),
        table=f"{paths.REPORT}/reliability.csv",
    log:
        paths.log("report/reliability"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
        metric_label=metric_label(REPORT["metric"]),  # for the caption
        confidence=config["evaluation"]["bootstrap"]["confidence"],  # for the caption
    script:
        "../scripts/report_reliability.py"


rule report_averaging:
    input:
        replicates=paths.BOOTSTRAP,
    output:
        figure=report(
            f"{paths.REPORT}/averaging.png",
            caption="../report/averaging.rst",
            category="Weight averaging",
        ),
        verdicts=report(
            f"{paths.REPORT}/averaging.csv",
            caption="../report/averaging_table.rst",
            category="Weight averaging",
        ),
        gains=f"{paths.REPORT}/averaging_gains.csv",
    log:
        paths.log("report/averaging"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        conditions=json.dumps(averaging.merged_conditions(config), sort_keys=True),
        alpha=config["evaluation"]["bootstrap"]["alpha"],
        metric_label=metric_label(REPORT["metric"]),  # for the captions
    script:
        "../scripts/report_averaging.py"


rule report_barriers:
    input:
        curves=report_config.barrier_inputs(config),
    output:
        figure=report(
            f"{paths.REPORT}/barriers.png",
            caption="../report/barriers.rst",
            category="Loss landscape",
        ),
        table=f"{paths.REPORT}/barriers.csv",
    log:
        paths.log("report/barriers"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        parts=json.dumps(report_config.connectivity_parts(config), sort_keys=True),
    script:
        "../scripts/report_barriers.py"


rule report_qualitative:
    input:
        cache=lambda wildcards: paths.cache(wildcards.test),
        models=list(QUALITATIVE_MODELS.values()),
    output:
        report(
            paths.QUALITATIVE,
            caption="../report/qualitative.rst",
            category="Qualitative",
            labels={"test set": "{test}"},
        ),
    log:
        paths.log("report/qualitative/{test}"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        models=QUALITATIVE_MODELS,
        images=REPORT["qualitative"]["images"],
    script:
        "../scripts/report_qualitative.py"


rule annotation_style:
    input:
        caches=[paths.cache(dataset) for dataset in SOURCE_DATASETS],
    output:
        clusters=report(
            f"{paths.ANNOTATION_STYLE}/clusters.png",
            caption="../report/annotation_style.rst",
            category="Annotation styles",
        ),
        areas=report(
            f"{paths.ANNOTATION_STYLE}/areas.png",
            caption="../report/annotation_areas.rst",
            category="Annotation styles",
        ),
        cluster_table=f"{paths.ANNOTATION_STYLE}/clusters.csv",
        consistency=report(
            f"{paths.ANNOTATION_STYLE}/consistency.csv",
            caption="../report/consistency.rst",
            category="Annotation styles",
        ),
        co_assignment=f"{paths.ANNOTATION_STYLE}/co_assignment.csv",
        features=f"{paths.ANNOTATION_STYLE}/features.csv",
        components=f"{paths.ANNOTATION_STYLE}/components.csv",
    log:
        paths.log("analysis/annotation_style"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        stage_caches=STAGE_CACHES,
    params:
        caches=cache_arguments,
        clusters=REPORT["annotation_style"]["clusters"],
        features=" ".join(REPORT["annotation_style"]["features"]),
        settings=json.dumps(REPORT["annotation_style"]["settings"], sort_keys=True),
        resamples=REPORT["annotation_style"]["resamples"],
        seed=REPORT["annotation_style"]["seed"],
        out=subpath(output.clusters, parent=True),
    shell:
        "lesionsoup annotation-style {params.caches}"
        " {resources.stage_caches} --clusters {params.clusters}"
        " --features {params.features} --settings {params.settings:q}"
        " --resamples {params.resamples} --seed {params.seed}"
        " --out-dir {params.out} > {log} 2>&1"


rule connectivity:
    input:
        unpack(
            lambda wildcards: report_config.connectivity_inputs(config, wildcards.pair)
        ),
    output:
        figure=report(
            f"{paths.CONNECTIVITY}.png",
            caption="../report/connectivity.rst",
            category="Loss landscape",
            labels={"pair": "{pair}"},
        ),
        curve=f"{paths.CONNECTIVITY}.csv",
        sharpness=report(
            f"{paths.CONNECTIVITY}_sharpness.csv",
            caption="../report/sharpness.rst",
            category="Loss landscape",
            subcategory="Sharpness tables",
            labels={"pair": "{pair}"},
        ),
    log:
        paths.log("analysis/connectivity/{pair}"),
    benchmark:
        paths.CONNECTIVITY_BENCHMARK
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=cluster.scaled_runtime(60, config),
        gpu=1,
        stage_caches=STAGE_CACHES,
    params:
        caches=cache_arguments,
        points=REPORT["connectivity"]["points"],
        part=lambda wildcards: report_config.connectivity_part(config, wildcards.pair),
        policies=" ".join(REPORT["connectivity"]["bn_policies"]),
        bn=ingredients.bn_sample_arguments(ingredients.bn_sample(config)),
        radii=" ".join(map(str, REPORT["connectivity"]["sharpness"]["radii"])),
        directions=REPORT["connectivity"]["sharpness"]["directions"],
        sharpness_seed=REPORT["connectivity"]["sharpness"]["seed"],
    shell:
        "lesionsoup connectivity {input.a} {input.b} {params.caches} {resources.stage_caches}"
        " --points {params.points} --part {params.part} --bn-policy {params.policies} {params.bn}"
        " --sharpness-radii {params.radii} --sharpness-directions {params.directions}"
        " --sharpness-seed {params.sharpness_seed} --sharpness {output.sharpness}"
        " --threads {threads} -o {output.curve} --figure {output.figure} > {log} 2>&1"


rule size_curve:
    input:
        unpack(
            lambda wildcards: report_config.size_curve_inputs(config, wildcards.combo)
        ),
        evaluations=lambda wildcards: report_config.size_curve_evaluations(
            config, wildcards.combo
        ),
    output:
        figure=report(
            f"{paths.SIZE_CURVES}.png",
            caption="../report/size_curves.rst",
            category="Efficiency",
            labels={"combination": "{combo}"},
        ),
        table=f"{paths.SIZE_CURVES}.csv",
    log:
        paths.log("report/size_curves/{combo}"),
    benchmark:
        paths.SIZE_CURVE_BENCHMARK
    conda:
        ENVIRONMENT
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=cluster.scaled_runtime(60, config),
        gpu=1,
        stage_caches=STAGE_CACHES,
    params:
        caches=cache_arguments,
        options=report_config.size_curve_arguments(config),
        settings=json.dumps(config["evaluation"]["inference"], sort_keys=True),
        bins=config["evaluation"]["bins"],
        metric_label=metric_label(REPORT["metric"]),  # for the caption
        max_members=REPORT["size_curves"]["max_members"],  # for the caption
        bootstrap={  # not alpha: the intervals do not depend on it
            key: config["evaluation"]["bootstrap"][key]
            for key in ("resamples", "confidence", "seed")
        },
        confidence=f"{config['evaluation']['bootstrap']['confidence']:.0%}",  # for the caption
    shell:
        "lesionsoup size-curve {input.candidates:q} {params.caches}"
        " {resources.stage_caches} {params.options}"
        " --settings {params.settings:q} --bins {params.bins} --threads {threads}"
        " --resamples {params.bootstrap[resamples]} --confidence {params.bootstrap[confidence]}"
        " --seed {params.bootstrap[seed]} --evaluations {input.evaluations:q}"
        " -o {output.table} --figure {output.figure} > {log} 2>&1"


rule summary:
    input:
        heatmap=rules.report_cross_dataset.output.heatmap_table,
        fine_coarse=rules.report_cross_dataset.output.fine_coarse_table,
        methods=rules.report_methods.output.comparison_table,
        significance=rules.report_methods.output.significance,
        seed_noise=rules.report_methods.output.seed_noise,
        cost_gain=rules.report_methods.output.cost_gain_table,
        styles=rules.annotation_style.output.cluster_table,
        averaging=report_config.averaging_table(config),
    output:
        report(
            paths.SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        paths.log("report/summary"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        confidence=f"{config['evaluation']['bootstrap']['confidence']:.0%}",  # for the caption
        alpha=config["evaluation"]["bootstrap"]["alpha"],  # for the caption
    script:
        "../scripts/summary.py"
