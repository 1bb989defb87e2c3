"""mission_control.testing."""

__all__: list[str] = []
