"""Generated CRI runtime.v1 stubs (api_pb2*.py) and their source, api.proto; regenerate with generate.sh."""
