package storage

// WithDefaults returns c with every zero field set to its default, as Open
// and NewMemory set it. The owner of the process uses it to check settings
// against other packages' and to print the configuration in force.
func (c Config) WithDefaults() Config { return c.withDefaults() }
