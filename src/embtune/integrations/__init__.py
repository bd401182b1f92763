"""Adapters to other engines (Ray Data, Spark): optional, imported only when used."""
