"""The barbershop booking domain."""
