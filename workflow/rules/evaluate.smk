# Every model on every test set, then the long metrics table.


rule evaluate:
    input:
        model=evaluated_model_path,
        cache="results/cache/{test}",
    output:
        "results/eval/{test}/{model}.json",
    log:
        "logs/evaluate/{test}/{model}.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
        gpu=1,
    params:
        settings=json.dumps(config["evaluation"]["inference"], sort_keys=True),
        bins=config["evaluation"]["bins"],
        resolution=config["evaluation"]["resolution"],
        manifest=lambda wildcards: f"results/data/{wildcards.test}/manifest.csv",
    shell:
        "lesionsoup evaluate {input.model} {input.cache} -o {output}"
        " --settings {params.settings:q} --bins {params.bins}"
        " --resolution {params.resolution} --manifest {params.manifest} > {log} 2>&1"


rule evaluated_models:
    output:
        "results/eval/models.json",
    log:
        "logs/evaluated_models.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        models=evaluated_models_json(),
    shell:
        "printf '%s\\n' {params.models:q} > {output} 2> {log}"


rule aggregate:
    input:
        evaluations=evaluation_files(),
        models="results/eval/models.json",
    output:
        metrics="results/metrics.csv",
        conventions="results/metrics.conventions.json",
    log:
        "logs/aggregate.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "lesionsoup aggregate {input.evaluations} --models {input.models}"
        " -o {output.metrics} > {log} 2>&1"
