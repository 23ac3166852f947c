# Weight-space soups and prediction-space ensembles of a combination's ingredients.
# The ingredient runs (grid, SWA, FGG) are trained by rule `train` (recipe names and settings
# from lesionsoup.plan.ingredients); candidates are scored on the combination's validation split.
rule merge:
    input:
        caches=combo_caches,
        ingredients=lambda wildcards: ingredients.soup_inputs(
            config, wildcards.combo, wildcards.method
        ),
        # the common start of an anchored soup (model_stock, ties): the shared initialisation,
        # or the pretrained start of an encoder soup of independent runs (--anchor, checked)
        start=lambda wildcards: ingredients.soup_start(
            config, wildcards.combo, wildcards.method
        ),
    output:
        weights=paths.MERGED,
        metadata=report(
            paths.MERGED_METADATA,
            caption="../report/merge_soup.rst",
            category="Merged models",
            subcategory="{combo}",
            labels={"model": "{method}"},
        ),
    log:
        paths.log("merge/{combo}/{method}"),
    benchmark:
        paths.MERGE_BENCHMARK
    wildcard_constraints:
        method=r"(?!ensemble-)[A-Za-z0-9_-]+",
    conda:
        ENVIRONMENT
    threads: config["training"]["threads"]
    resources:
        mem_mb=retried_memory(8000),
        runtime=cluster.scaled_runtime(120, config),
        gpu=1,
        stage_caches=STAGE_CACHES,
    params:
        soup=lambda wildcards: json.dumps(
            ingredients.soup_settings(config, wildcards.method), sort_keys=True
        ),
        options=lambda wildcards: ingredients.soup_arguments(config, wildcards.method),
        caches=cache_arguments,
        anchor=lambda wildcards, input: " ".join(
            f"--anchor {path}" for path in input.start
        ),
    shell:
        "lesionsoup merge -o {output.weights} {params.options} {params.anchor} {params.caches}"
        " {resources.stage_caches}"
        " --threads {threads} {input.ingredients:q} > {log} 2>&1"


rule ensemble:
    input:
        caches=combo_caches,
        ingredients=lambda wildcards: ingredients.ensemble_inputs(
            config, wildcards.combo, wildcards.name
        ),
    output:
        report(
            paths.ENSEMBLE,
            caption="../report/merge_ensemble.rst",
            category="Merged models",
            subcategory="{combo}",
            labels={"model": "ensemble-{name}"},
        ),
    log:
        paths.log("ensemble/{combo}/{name}"),
    benchmark:
        paths.ENSEMBLE_BENCHMARK
    conda:
        ENVIRONMENT
    threads: config["training"]["threads"]
    resources:
        **MODEL_JOB,
        gpu=1,
    params:
        ensemble=lambda wildcards: json.dumps(
            ingredients.ensemble_settings(config, wildcards.name), sort_keys=True
        ),
        options=lambda wildcards: ingredients.ensemble_arguments(config, wildcards.name),
        caches=cache_arguments,
    shell:
        "lesionsoup ensemble -o {output} {params.options} {params.caches} {resources.stage_caches}"
        " --threads {threads} {input.ingredients:q} > {log} 2>&1"
