package config

import "reflect"

func rootValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }
