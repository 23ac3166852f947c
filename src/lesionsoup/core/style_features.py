"""Names of the dataset-level annotation-style features (no heavy imports: the
workflow reads them while planning)."""

#: Dataset-level features the annotation-style clustering uses by default.
STYLE_FEATURES: tuple[str, ...] = (
    "components_per_image",
    "log_area_median",
    "irregularity_median",
    "fill_ratio_median",
    "edge_contrast",
    "edge_balance",
)
