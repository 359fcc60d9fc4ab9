"""Pure data and ML steps: DataFrames and arrays in, DataFrames and objects out. No Dagster."""
