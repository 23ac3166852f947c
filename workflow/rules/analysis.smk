# The analyses: of the data (annotation styles of every source dataset) and of the models
# (linear mode connectivity and sharpness of configured pairs, size curves of soups and
# ensembles over their number of members). Each one command (`lesionsoup ...`): its tables
# and its figures.


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
        **MODEL_JOB,
        gpu=1,
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
        **MODEL_JOB,
        gpu=1,
    params:
        caches=cache_arguments,
        options=report_config.size_curve_arguments(config),
        settings=json.dumps(config["evaluation"]["inference"], sort_keys=True),
        bins=config["evaluation"]["bins"],
        metric_label=CAPTIONS["metric_label"],  # for the caption
        max_members=CAPTIONS["max_members"],  # for the caption
        bootstrap={  # not alpha: the intervals do not depend on it
            key: config["evaluation"]["bootstrap"][key]
            for key in ("resamples", "confidence", "seed")
        },
        confidence=CAPTIONS["percent"],  # for the caption
    shell:
        "lesionsoup size-curve {input.candidates:q} {params.caches}"
        " {resources.stage_caches} {params.options}"
        " --settings {params.settings:q} --bins {params.bins} --threads {threads}"
        " --resamples {params.bootstrap[resamples]} --confidence {params.bootstrap[confidence]}"
        " --seed {params.bootstrap[seed]} --evaluations {input.evaluations:q}"
        " -o {output.table} --figure {output.figure} > {log} 2>&1"
