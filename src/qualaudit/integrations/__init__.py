"""Adapters that run qualaudit inside other engines (`ray`: Ray Data). Each imports its
engine only when used, so that qualaudit works without any of them installed."""
