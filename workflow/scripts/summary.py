"""Rule `summary`: summary.md, the study's main tables in one Markdown file."""

from lesionsoup.report.summary import write_study_summary

from logs import logged

with logged(snakemake.log[0]):
    # an optional table (averaging) is a list: empty where the study has none
    tables = {
        name: path if isinstance(path, str) else path[0]
        for name, path in snakemake.input.items()
        if path
    }
    write_study_summary(tables, snakemake.output[0])
