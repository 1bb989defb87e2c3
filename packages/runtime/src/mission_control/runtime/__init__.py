"""mission_control.runtime."""

__all__: list[str] = []
