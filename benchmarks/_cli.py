"""Argument checks shared by the benchmark scripts (scaling.py, serial_sections.py)."""

import argparse


def int_at_least(low):
    """argparse type: an integer >= low."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"an integer of {low} or more expected, got {text!r}")
        return value

    return parse


def int_list(low):
    """argparse type: comma-separated integers >= low ("1,2,4")."""
    parse_one = int_at_least(low)

    def parse(text):
        try:
            return [parse_one(part) for part in text.split(",")]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"comma-separated integers of {low} or more expected, "
                                             f"got {text!r}") from None

    return parse


def model_list(parser, text, known):
    """The comma-separated model names of --models; parser.error names any unknown one."""
    names = text.split(",")
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose among {', '.join(known)}")
    return names
