"""standin stage."""
