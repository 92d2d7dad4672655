"""Reports over score files: agreement with a team's own QA labels (`agreement`). Reads rows
through `qualaudit.io`; never needs torch."""
