"""Shop platform adapters: make Encore's codes work at the shop's checkout.

A floor beside `channels/`: adapters to the outside world that import only the pure
domain (`coupons/`), the standard library and requests.
"""

from platforms.base import DiscountShape, PlatformError, ShopPlatform, SyncOutcome

__all__ = ["DiscountShape", "PlatformError", "ShopPlatform", "SyncOutcome"]
