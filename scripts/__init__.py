"""Campaign scripts of codemode_store (reliability figures); run ``python scripts/crash_campaign.py``."""
