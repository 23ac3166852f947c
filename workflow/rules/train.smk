# Pretrained encoder weights, then the shared initialisation per combination, then training
# runs (combination x recipe x seed).
# The weights are fetched once where Snakemake runs (a login node has network, compute nodes
# often have none) into a folder the jobs read them from offline, shared by every study run in
# this working directory; the hpo trials (hpo.smk) read them too.


localrules:
    fetch_weights,
    pretrained_start,


rule fetch_weights:
    output:
        paths.PRETRAINED_RECORD,
    log:
        paths.log("fetch_weights/{encoder}.{weights}"),
    wildcard_constraints:
        encoder=r"[^/]+",
        weights=r"[^./]+",
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cache=subpath(output[0], parent=True),
    shell:
        "exec lesionsoup fetch-weights --encoder {wildcards.encoder:q}"
        " --weights {wildcards.weights:q} --cache {params.cache} -o {output} > {log} 2>&1"


# The model every independent run begins from (the pretrained encoder; decoder and head of
# seed 0), one per study: the anchor of model_stock and ties encoder soups of independent runs
# (merge.smk). Seconds of CPU, so local like the fetch; it follows the fetch record.
rule pretrained_start:
    input:
        record=paths.PRETRAINED_RECORD,
    output:
        weights=paths.PRETRAINED_START,
        metadata=paths.PRETRAINED_START_METADATA,
    log:
        paths.log("pretrained_start/{encoder}.{weights}"),
    wildcard_constraints:
        encoder=r"[^/]+",
        weights=r"[^./]+",
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model=MODEL_SPEC,
        cache=subpath(input.record, parent=True),
    shell:
        "exec lesionsoup pretrained-start -o {output.weights} --model {params.model:q}"
        " --record {input.record} --pretrained-cache {params.cache} > {log} 2>&1"


WARMUP_DEVICES = study.devices(study.warmup_settings(config))


rule warmup:
    input:
        caches=combo_caches,
        pretrained=pretrained_input,
    output:
        weights=paths.INIT,
        metadata=paths.INIT_METADATA,
    log:
        paths.log("warmup/{combo}"),
    benchmark:
        paths.WARMUP_BENCHMARK
    conda:
        ENVIRONMENT
    threads: training_cores(WARMUP_DEVICES)
    resources:
        **TRAINING_JOB,
        mem_mb=retried_memory(8000),
        runtime=cluster.scaled_runtime(120, config),
        gpu=WARMUP_DEVICES,
    params:
        model=MODEL_SPEC,
        settings=json.dumps(study.warmup_settings(config), sort_keys=True),
        caches=cache_arguments,
        pretrained=pretrained_argument,
        precision=config["training"]["precision"],
        micro_batch=config["training"]["micro_batch"],
        log_every=config["training"]["log_every"],
    shell:
        "exec lesionsoup warmup -o {output.weights} {params.caches}"
        " {resources.stage_caches} {resources.trackers} --model {params.model:q}"
        " --settings {params.settings:q} {params.pretrained} --threads {threads}"
        " --precision {params.precision} --micro-batch {params.micro_batch}"
        " --log-every {params.log_every} > {log} 2>&1"


rule train:
    input:
        caches=combo_caches,
        init=lambda wildcards: ingredients.init_for(
            config, wildcards.combo, wildcards.recipe, int(wildcards.seed)
        ),
        hpo=hpo_tuned_input,
        optimizer=lambda wildcards: ingredients.optimizer_input(
            wildcards.combo, wildcards.recipe, int(wildcards.seed)
        ),
        pretrained=pretrained_input,
    output:
        best=f"{paths.RUN}/best.safetensors",
        best_metadata=f"{paths.RUN}/best.json",
        last=f"{paths.RUN}/last.safetensors",
        last_metadata=f"{paths.RUN}/last.json",
        snapshots=directory(f"{paths.RUN}/snapshots"),
        optimizer=directory(paths.RUN_OPTIMIZER),
        steps=f"{paths.RUN}/log.csv",
        validation=f"{paths.RUN}/validation.csv",
        curves=report(
            f"{paths.RUN}/curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{combo}",
            labels={"recipe": "{recipe}", "seed": "{seed}"},
        ),
    log:
        paths.log("train/{combo}/{recipe}/seed{seed}"),
    benchmark:
        paths.TRAIN_BENCHMARK
    conda:
        ENVIRONMENT
    threads: lambda wildcards: training_cores(train_devices(wildcards))
    resources:
        **TRAINING_JOB,
        mem_mb=retried_memory(16000),
        runtime=cluster.scaled_runtime(24 * 60, config),
        gpu=train_devices,
    params:
        model=MODEL_SPEC,
        settings=train_settings,
        caches=cache_arguments,
        run=subpath(output.best, parent=True),
        init=init_argument,
        optimizer=lambda wildcards: ingredients.train_arguments(
            config, wildcards.combo, wildcards.recipe, int(wildcards.seed)
        ),
        pretrained=pretrained_argument,
        precision=config["training"]["precision"],
        micro_batch=config["training"]["micro_batch"],
        log_every=config["training"]["log_every"],
    shell:
        "exec lesionsoup train -o {params.run} {params.init} {params.optimizer} {params.caches}"
        " {resources.stage_caches} {resources.trackers}"
        " --model {params.model:q} --settings {params.settings:q} {params.pretrained}"
        " --threads {threads}"
        " --precision {params.precision} --micro-batch {params.micro_batch}"
        " --log-every {params.log_every} > {log} 2>&1"
