"""mission_control.adapter_sqlite."""

__all__: list[str] = []
