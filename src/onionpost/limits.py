"""Every bound onionpost enforces, in one place (STYLE: everything is bounded).

The protocol spec lists these same numbers; a test checks that they agree.
"""

from __future__ import annotations

from typing import Final

# Noise (Noise §3): the largest whole handshake or transport message.
NOISE_MAX_MESSAGE: Final = 65535
# ChaChaPoly authentication tag.
NOISE_TAG_LEN: Final = 16
# The largest transport payload that fits in one Noise message.
NOISE_MAX_PAYLOAD: Final = NOISE_MAX_MESSAGE - NOISE_TAG_LEN
