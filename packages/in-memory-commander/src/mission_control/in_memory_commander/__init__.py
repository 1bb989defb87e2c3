"""mission_control.in_memory_commander."""

__all__: list[str] = []
