"""Admin API: bearer key, room CRUD, validation errors."""

from __future__ import annotations

import pytest

from signalling.access.admin import admin_app
from signalling.access.gating import MemoryRoomRegistry


def test_refuses_to_start_without_key() -> None:
    with pytest.raises(ValueError, match="admin_key"):
        admin_app(MemoryRoomRegistry(), "")
