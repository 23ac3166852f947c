"""Rule `summary`: summary.md, the study's main tables in one Markdown file."""

from lesionsoup.report.summary import write_study_summary

from logs import logged

with logged(snakemake.log[0]):
    write_study_summary(snakemake.input, snakemake.output[0])
