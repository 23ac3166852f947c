# Hyperparameter search: n_trials trial jobs per (combination, tuned recipe), then the export.
# The export is a checkpoint: a tuned recipe's train job reads best_params.yaml through `params`
# (see hpo_tuned_input in common.smk), so it reruns only when the best parameters change.
wildcard_constraints:
    index=r"\d+",


rule hpo_trial:
    input:
        caches=combo_caches,
        init=lambda wildcards: study.start_input(
            config, wildcards.combo, wildcards.recipe
        ),
        pretrained=pretrained_input,
    output:
        directory(paths.HPO_TRIAL),
    log:
        paths.log("hpo/{combo}/{recipe}/trial{index}"),
    benchmark:
        paths.HPO_TRIAL_BENCHMARK
    priority: 1  # at the head of the longest chain: trials, export, tuned training
    conda:
        ENVIRONMENT
    threads: lambda wildcards: training_cores(trial_devices(wildcards))
    resources:
        **TRAINING_JOB,
        mem_mb=retried_memory(16000),
        runtime=cluster.scaled_runtime(12 * 60, config),
        gpu=lambda wildcards: trial_devices(wildcards),
    params:
        definition=lambda wildcards: json.dumps(
            hpo.definition(config, wildcards.recipe), sort_keys=True
        ),
        storage=lambda wildcards: hpo.storage_location(
            config, wildcards.combo, wildcards.recipe
        ),
        caches=cache_arguments,
        init=init_argument,
        pretrained=pretrained_argument,
        precision=config["training"]["precision"],
        micro_batch=config["training"]["micro_batch"],
        log_every=config["training"]["log_every"],
    shell:
        "exec lesionsoup hpo-trial -o {output} --job-index {wildcards.index}"
        " --combo {wildcards.combo} --recipe {wildcards.recipe} --storage {params.storage:q}"
        " --definition {params.definition:q} {params.init} {params.caches}"
        " {resources.stage_caches} {resources.trackers} {params.pretrained} --threads {threads}"
        " --precision {params.precision} --micro-batch {params.micro_batch}"
        " --log-every {params.log_every}"
        " > {log} 2>&1"


checkpoint hpo_export:
    input:
        lambda wildcards: hpo.trial_folders(config, wildcards.combo, wildcards.recipe),
    output:
        best_params=paths.HPO_BEST_PARAMS,
        ingredients=paths.HPO_INGREDIENTS,
        trials=f"{paths.HPO_STUDY}/trials.csv",
        history=report(
            paths.HPO_HISTORY,
            caption="../report/hpo_history.rst",
            category="Hyperparameter search",
            subcategory="{combo}",
            labels={"recipe": "{recipe}", "figure": "history"},
        ),
        importances=report(
            f"{paths.HPO_STUDY}/importances.png",
            caption="../report/hpo_importances.rst",
            category="Hyperparameter search",
            subcategory="{combo}",
            labels={"recipe": "{recipe}", "figure": "importances"},
        ),
        parallel=report(
            f"{paths.HPO_STUDY}/parallel.png",
            caption="../report/hpo_parallel.rst",
            category="Hyperparameter search",
            subcategory="{combo}",
            labels={"recipe": "{recipe}", "figure": "parallel coordinates"},
        ),
    log:
        paths.log("hpo/{combo}/{recipe}/export"),
    priority: 1
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        **SMALL_JOB,
    params:
        out=subpath(output.best_params, parent=True),
    shell:
        "lesionsoup hpo-export {input:q} -o {params.out} > {log} 2>&1"
