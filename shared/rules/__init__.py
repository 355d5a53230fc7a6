"""Domain rules every service applies alike: label matchers, silences, inhibition, maintenance windows, the mute
decision built from them, and on-call schedules.
"""
