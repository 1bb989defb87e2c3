"""mission_control.core."""

__all__: list[str] = []
