# The study's figures and tables (from results/metrics.csv), and the analyses of the data
# (annotation styles) and of the models (linear mode connectivity).

from lesionsoup.plan import report as report_config

REPORT = report_config.report_settings(config)
QUALITATIVE_MODELS = report_config.qualitative_models(config, EVALUATED)
METRICS = "results/metrics.csv"
METRICS_NOTES = "results/metrics.conventions.json"


rule costs:
    input:
        metrics=METRICS,
        notes=METRICS_NOTES,
    output:
        "results/costs.csv",
    log:
        "logs/report/costs.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lesionsoup costs {input.metrics} -o {output} > {log} 2>&1"


rule report_cross_dataset:
    input:
        METRICS,
    output:
        heatmap=report(
            "results/report/cross_dataset.png",
            caption="../report/cross_dataset.rst",
            category="Cross-dataset",
        ),
        heatmap_table="results/report/cross_dataset.csv",
        fine_coarse=report(
            "results/report/fine_coarse.png",
            caption="../report/fine_coarse.rst",
            category="Cross-dataset",
        ),
        fine_coarse_table="results/report/fine_coarse.csv",
    log:
        "logs/report/cross_dataset.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
        method=REPORT["method"],
        coarse=REPORT["coarse"],
    shell:
        "lesionsoup report-cross-dataset {input} --metric {params.metric}"
        " --method {params.method} --coarse {params.coarse}"
        " --heatmap {output.heatmap} --fine-coarse {output.fine_coarse} > {log} 2>&1"


rule report_methods:
    input:
        metrics=METRICS,
        costs="results/costs.csv",
    output:
        comparison=report(
            "results/report/methods.png",
            caption="../report/methods.rst",
            category="Methods",
        ),
        comparison_table="results/report/methods.csv",
        cost_gain=report(
            "results/report/cost_gain.png",
            caption="../report/cost_gain.rst",
            category="Methods",
        ),
        cost_gain_table="results/report/cost_gain.csv",
    log:
        "logs/report/methods.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
    shell:
        "lesionsoup report-methods {input.metrics} --costs {input.costs}"
        " --metric {params.metric} --comparison {output.comparison}"
        " --cost-gain {output.cost_gain} > {log} 2>&1"


rule report_pr_curves:
    input:
        metrics=METRICS,
        notes=METRICS_NOTES,
    output:
        figure=report(
            "results/report/pr_curves.png",
            caption="../report/pr_curves.rst",
            category="Cross-dataset",
        ),
        table="results/report/pr_curves.csv",
    log:
        "logs/report/pr_curves.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=REPORT["metric"],
        top=REPORT["pr_top"],
    shell:
        "lesionsoup report-pr {input.metrics} --metric {params.metric} --top {params.top}"
        " -o {output.figure} > {log} 2>&1"


rule report_qualitative:
    input:
        cache="results/cache/{test}",
        models=list(QUALITATIVE_MODELS.values()),
    output:
        report(
            "results/report/qualitative/{test}.png",
            caption="../report/qualitative.rst",
            category="Qualitative",
            labels={"test set": "{test}"},
        ),
    log:
        "logs/report/qualitative/{test}.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        models=" ".join(
            f"--model {label}={path}" for label, path in QUALITATIVE_MODELS.items()
        ),
        images=REPORT["qualitative"]["images"],
    shell:
        "lesionsoup qualitative --cache {input.cache} {params.models}"
        " --images {params.images} -o {output} > {log} 2>&1"


rule annotation_style:
    input:
        caches=expand("results/cache/{dataset}", dataset=DATASETS),
    output:
        clusters=report(
            "results/analysis/annotation_style/clusters.png",
            caption="../report/annotation_style.rst",
            category="Annotation styles",
        ),
        areas=report(
            "results/analysis/annotation_style/areas.png",
            caption="../report/annotation_areas.rst",
            category="Annotation styles",
        ),
        cluster_table="results/analysis/annotation_style/clusters.csv",
        features="results/analysis/annotation_style/features.csv",
        components="results/analysis/annotation_style/components.csv",
    log:
        "logs/analysis/annotation_style.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        caches=lambda wildcards, input: " ".join(f"--cache {c}" for c in input.caches),
        clusters=REPORT["annotation_style"]["clusters"],
        features=" ".join(REPORT["annotation_style"]["features"]),
        settings=json.dumps(REPORT["annotation_style"]["settings"], sort_keys=True),
        out=subpath(output.clusters, parent=True),
    shell:
        "lesionsoup annotation-style {params.caches} --clusters {params.clusters}"
        " --features {params.features} --settings {params.settings:q}"
        " --out-dir {params.out} > {log} 2>&1"


rule connectivity:
    input:
        unpack(
            lambda wildcards: report_config.connectivity_inputs(config, wildcards.pair)
        ),
    output:
        figure=report(
            "results/analysis/connectivity/{pair}.png",
            caption="../report/connectivity.rst",
            category="Loss landscape",
            labels={"pair": "{pair}"},
        ),
        curve="results/analysis/connectivity/{pair}.csv",
    log:
        "logs/analysis/connectivity/{pair}.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
        gpu=1,
    params:
        caches=lambda wildcards, input: " ".join(f"--cache {c}" for c in input.caches),
        points=REPORT["connectivity"]["points"],
        policies=" ".join(REPORT["connectivity"]["bn_policies"]),
        patches=REPORT["connectivity"]["bn_patches"],
        patch_size=REPORT["connectivity"]["patch_size"],
    shell:
        "lesionsoup connectivity {input.a} {input.b} {params.caches}"
        " --points {params.points} --bn-policy {params.policies}"
        " --bn-patches {params.patches} --patch-size {params.patch_size}"
        " --threads {threads} -o {output.curve} --figure {output.figure} > {log} 2>&1"


rule summary:
    input:
        heatmap="results/report/cross_dataset.csv",
        fine_coarse="results/report/fine_coarse.csv",
        methods="results/report/methods.csv",
        cost_gain="results/report/cost_gain.csv",
        styles="results/analysis/annotation_style/clusters.csv",
    output:
        report(
            "results/summary.md",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        "logs/report/summary.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "lesionsoup summary"
        " --table 'Cross-dataset scores (per lesion)={input.heatmap}'"
        " --table 'Fine vs coarse training data={input.fine_coarse}'"
        " --table 'Cost vs gain per method={input.cost_gain}'"
        " --table 'Annotation-style clusters={input.styles}'"
        " --table 'Methods per combination and test set={input.methods}'"
        " -o {output} > {log} 2>&1"
