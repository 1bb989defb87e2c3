"""mission_control.client."""

__all__: list[str] = []
