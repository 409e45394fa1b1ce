"""TIM drivers: one class per kind of TIM link, exposing channels and readings."""
