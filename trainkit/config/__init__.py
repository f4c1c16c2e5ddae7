"""Configs: the schema and its validation (loader), YAML with positions (yamlsource), the
wording of errors (errors), and the base classes every component block derives from (base)."""

from trainkit.config.loader import LoadedConfig, SourceMap, dump_yaml, load_config, load_config_text, parse_yaml

__all__ = ["LoadedConfig", "load_config", "load_config_text", "parse_yaml", "dump_yaml", "SourceMap"]
