"""Reports over score files: the audit report (`build.build_report`: cohorts, AI vs human
like for like, escalation timing, speed, trends and alerts, two versions compared, triage
queues; rendered by `markdown`) and agreement with a team's own QA labels (`agreement`).
Reads rows through `qualaudit.io`; never needs torch."""
