"""A module served inside MicroPython whose handler never returns (a wedged interpreter)."""


def handle(line):
    while True:
        pass
