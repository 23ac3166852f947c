# The study's figures and tables, drawn from results/metrics.csv, its bootstrap replicates and
# the analyses' tables, and their summary: every rule a `script:` of workflow/scripts/.

from lesionsoup.plan import averaging

QUALITATIVE_MODELS = report_config.qualitative_models(config, EVALUATED)


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
        **SMALL_JOB,
    params:
        metric=REPORT["metric"],
        metric_label=CAPTIONS["metric_label"],  # for the captions
        method=REPORT["method"],
        coarse=REPORT["coarse"],
        confidence=CAPTIONS["confidence"],  # for the captions
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
        **SMALL_JOB,
    params:
        metric=REPORT["metric"],
        metric_label=CAPTIONS["metric_label"],  # for the captions
        alpha=config["evaluation"]["bootstrap"]["alpha"],
        confidence=CAPTIONS["percent"],  # for the captions
        resamples=CAPTIONS["resamples"],  # for the captions
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
        **SMALL_JOB,
    params:
        metric=REPORT["metric"],
        metric_label=CAPTIONS["metric_label"],  # for the captions
        top=REPORT["pr_top"],
        confidence=CAPTIONS["confidence"],  # for the caption
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
        **SMALL_JOB,
    params:
        metric=REPORT["metric"],
        metric_label=CAPTIONS["metric_label"],  # for the caption
        confidence=CAPTIONS["confidence"],  # for the caption
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
        **SMALL_JOB,
    params:
        conditions=json.dumps(averaging.merged_conditions(config), sort_keys=True),
        alpha=config["evaluation"]["bootstrap"]["alpha"],
        metric_label=CAPTIONS["metric_label"],  # for the captions
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
        **SMALL_JOB,
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
        confidence=CAPTIONS["percent"],  # for the caption
        alpha=CAPTIONS["alpha"],  # for the caption
    script:
        "../scripts/summary.py"
