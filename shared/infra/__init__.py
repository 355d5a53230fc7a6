"""Infrastructure: settings from the environment, YAML config files and their errors, JSON logging, metrics, ids and
signed action links.
"""
