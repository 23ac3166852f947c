# Shared initialisation per combination, then training runs (combination x recipe x seed).


rule warmup:
    input:
        caches=combo_caches,
    output:
        weights="results/models/{combo}/init.safetensors",
        metadata="results/models/{combo}/init.json",
    log:
        "logs/warmup/{combo}.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
        gpu=1,
    params:
        model=MODEL_SPEC,
        settings=json.dumps(study.warmup_settings(config), sort_keys=True),
        caches=cache_arguments,
    shell:
        "lesionsoup warmup -o {output.weights} {params.caches} --model {params.model:q}"
        " --settings {params.settings:q} --threads {threads} > {log} 2>&1"


rule train:
    input:
        caches=combo_caches,
        init=lambda wildcards: ingredients.init_for(
            wildcards.combo, wildcards.recipe, int(wildcards.seed)
        ),
        hpo=hpo_tuned_input,
    output:
        best="results/models/{combo}/{recipe}/seed{seed}/best.safetensors",
        best_metadata="results/models/{combo}/{recipe}/seed{seed}/best.json",
        last="results/models/{combo}/{recipe}/seed{seed}/last.safetensors",
        last_metadata="results/models/{combo}/{recipe}/seed{seed}/last.json",
        snapshots=directory("results/models/{combo}/{recipe}/seed{seed}/snapshots"),
        steps="results/models/{combo}/{recipe}/seed{seed}/log.csv",
        validation="results/models/{combo}/{recipe}/seed{seed}/validation.csv",
        curves=report(
            "results/models/{combo}/{recipe}/seed{seed}/curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{combo}",
            labels={"recipe": "{recipe}", "seed": "{seed}"},
        ),
    log:
        "logs/train/{combo}/{recipe}/seed{seed}.log",
    conda:
        "../../envs/lesionsoup.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 24 * 60 * attempt,
        gpu=1,
    params:
        model=MODEL_SPEC,
        settings=train_settings,
        caches=cache_arguments,
        run=subpath(output.best, parent=True),
    shell:
        "lesionsoup train -o {params.run} --init {input.init} {params.caches}"
        " --model {params.model:q} --settings {params.settings:q} --threads {threads}"
        " > {log} 2>&1"
