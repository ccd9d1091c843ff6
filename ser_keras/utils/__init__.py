"""Small helpers shared across ser_keras: atomic files, argument checks, presets."""
