"""Test helpers shared by several test modules (fault-injecting servers, ...)."""
