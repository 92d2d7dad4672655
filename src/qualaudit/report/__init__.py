"""Reports over score files; never needs torch, reads rows through `qualaudit.io`.

- The audit report: `build.build_report(scores, ReportOptions(...))` returns every section
  as JSON-ready data (table: score files streamed into columns; cohorts; ai_vs_human with
  topics; escalation; trends; compare; triage; transcripts: the one pass over them), rendered
  by `markdown.to_markdown`, `html.to_html` (charts: matplotlib SVG) and
  `csv_tables.write_csv_tables`. `synthetic` makes SYNTHETIC rows for demos and tests.
- Agreement with a team's own QA labels: `agreement`.
"""
