"""Settings: the one place that reads the environment. Above the domain (it imports
only `coupons/` and the standard library), below everything that uses them."""
