# Every model on every test set (one job a model), then the long metrics table, the models'
# costs, and the bootstrap intervals and comparisons of the metrics.
# The model table and the aggregation are tiny: they run in the main process.
# Adding a test set reruns every model's job; results whose inputs did not change are
# then copied from the store (lesionsoup.evaluation.per_model), not evaluated again.

TESTS = study.test_datasets(config)


localrules:
    evaluated_models,
    aggregate,


rule evaluate:
    input:
        model=evaluated_model_path,
        caches=[paths.cache(test) for test in TESTS],
    output:
        evaluation.model_evaluation_files(config, "{model}"),
    log:
        paths.log("evaluate/{model}"),
    benchmark:
        paths.EVALUATE_BENCHMARK
    conda:
        ENVIRONMENT
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=retried_memory(8000),
        runtime=cluster.scaled_runtime(60 * len(TESTS), config),
        gpu=1,
    params:
        settings=json.dumps(config["evaluation"]["inference"], sort_keys=True),
        bins=config["evaluation"]["bins"],
        resolution=config["evaluation"]["resolution"],
        labels=config["evaluation"]["labels"],
        manifests=[paths.manifest(test) for test in TESTS],
        store=paths.EVALUATION_STORE,
    shell:
        "lesionsoup evaluate {input.model} {input.caches} -o {output}"
        " --settings {params.settings:q} --bins {params.bins}"
        " --resolution {params.resolution} --labels {params.labels}"
        " --manifest {params.manifests}"
        " --store {params.store} > {log} 2>&1"


rule evaluated_models:
    output:
        paths.EVALUATED_MODELS,
    log:
        paths.log("evaluated_models"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        models=evaluation.model_table(EVALUATED),
    script:
        "../scripts/evaluated_models.py"


rule aggregate:
    input:
        evaluations=evaluation.evaluation_files(config, EVALUATED),
        models=paths.EVALUATED_MODELS,
    output:
        metrics=paths.METRICS,
        conventions=paths.METRICS_CONVENTIONS,
    log:
        paths.log("aggregate"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        **SMALL_JOB,
    script:
        "../scripts/aggregate.py"


rule costs:
    input:
        metrics=paths.METRICS,
        notes=paths.METRICS_CONVENTIONS,
        # the training, merging and ensemble jobs' own records: a rerun of one reruns this
        # (a model already there without its record is costed from its sidecar, not retrained)
        records=evaluation.cost_records(config, EVALUATED),
    output:
        paths.COSTS,
    log:
        paths.log("report/costs"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        **SMALL_JOB,
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
        metric_label=CAPTIONS["metric_label"],  # for the captions
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
