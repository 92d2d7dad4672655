"""qualaudit: quality audits of customer-support conversations, AI and human agents alike."""

__version__ = "0.1.0"
