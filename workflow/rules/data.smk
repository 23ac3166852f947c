# Native datasets -> manifests (with their splits) -> preprocessed caches.


rule synth:
    output:
        out=directory(SYNTHETIC["out"]),
        stamps=SYNTHETIC_STAMPS,
    log:
        paths.log("synth"),
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        **SMALL_JOB,
    params:
        images=SYNTHETIC["images"],
        seed=SYNTHETIC["seed"],
        scale=SYNTHETIC["scale"],
        styles=json.dumps(SYNTHETIC["styles"], sort_keys=True),
        dataset_styles=json.dumps(SYNTHETIC["dataset_styles"], sort_keys=True),
        lesion_sizes=json.dumps(SYNTHETIC["lesion_sizes"], sort_keys=True),
        stamps=json.dumps({stamp: TREE_ROOTS[stamp] for stamp in SYNTHETIC_STAMPS}),
    shell:
        "lesionsoup synth --out {output.out} --images {params.images} --seed {params.seed}"
        " --scale {params.scale} --styles {params.styles:q}"
        " --dataset-styles {params.dataset_styles:q}"
        " --lesion-sizes {params.lesion_sizes:q} --stamps {params.stamps:q}"
        " --threads {threads} > {log} 2>&1"


rule index:
    input:
        root=dataset_root,
        split_file=split_file,
        tree=lambda wildcards: paths.tree_stamp(wildcards.dataset),
    output:
        paths.MANIFEST,
    log:
        paths.log("index/{dataset}"),
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        root=lambda wildcards: config["datasets"][wildcards.dataset]["root"],
        options=index_options,
        unrecognised=config["preprocess"]["unrecognised"],
    shell:
        "lesionsoup index {wildcards.dataset} {params.root:q} -o {output}"
        " --options {params.options:q} --unrecognised {params.unrecognised} > {log} 2>&1"


rule preprocess:
    input:
        paths.MANIFEST,
    output:
        directory(paths.CACHE),
    log:
        paths.log("preprocess/{dataset}"),
    conda:
        ENVIRONMENT
    threads: config["preprocess"]["threads"]
    resources:
        mem_mb=lambda wildcards, threads, attempt: 1500 * threads * attempt,
        runtime=cluster.scaled_runtime(60, config),
    params:
        size=config["preprocess"]["size"],
        rules=mask_rules,
        mask_resize=config["preprocess"]["mask_resize"],
        on_bad_image=config["preprocess"]["on_bad_image"],
    shell:
        "lesionsoup preprocess {input} -o {output} --size {params.size}"
        " --mask-threshold {params.rules[threshold]}"
        " --uncertain-value {params.rules[uncertain_value]}"
        " --uncertain-as {params.rules[uncertain_as]}"
        " --lesion-rules {params.rules[lesion_rules]:q}"
        " --mask-resize {params.mask_resize}"
        " --on-bad-image {params.on_bad_image} --threads {threads} > {log} 2>&1"
