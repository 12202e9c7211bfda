"""Models shared by the dataflow (`flows`) and the API (`api`)."""
