"""The operators' web page: server-rendered HTML over the same queries as the API."""
