# Every model on every test set, then the long metrics table.


rule evaluate:
    input:
        model=evaluated_model_path,
        cache=lambda wildcards: paths.cache(wildcards.test),
    output:
        paths.EVALUATION,
    log:
        paths.log("evaluate/{test}/{model}"),
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=cluster.scaled_runtime(60, config),
        gpu=1,
    params:
        settings=json.dumps(config["evaluation"]["inference"], sort_keys=True),
        bins=config["evaluation"]["bins"],
        resolution=config["evaluation"]["resolution"],
        manifest=lambda wildcards: paths.manifest(wildcards.test),
    shell:
        "lesionsoup evaluate {input.model} {input.cache} -o {output}"
        " --settings {params.settings:q} --bins {params.bins}"
        " --resolution {params.resolution} --manifest {params.manifest} > {log} 2>&1"


rule evaluated_models:
    output:
        paths.EVALUATED_MODELS,
    log:
        paths.log("evaluated_models"),
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
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/aggregate.py"
