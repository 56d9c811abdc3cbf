package node

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// ConfigFlag names the flag (and, as SWITCHBOARD_CONFIG, the variable) of
// the TOML file Load reads.
const ConfigFlag = "config"

// EnvPrefix starts every environment variable Load reads.
const EnvPrefix = "SWITCHBOARD_"

// flagValue is a setting's flag: it keeps the text as given, and Load
// parses it in the setting's unit with the file's and the environment's
// values, so all three read the same way.
type flagValue struct {
	text string
	unit Unit
}

func (v *flagValue) String() string     { return v.text }
func (v *flagValue) Set(s string) error { v.text = s; return nil }
func (v *flagValue) Type() string       { return string(v.unit) }

// Flags defines on fs a flag for every setting, and --config.
func Flags(fs *pflag.FlagSet) {
	fs.SortFlags = false
	fs.String(ConfigFlag, "", "TOML file of settings (see --print-config); env "+EnvPrefix+"CONFIG")
	for _, s := range Settings() {
		f := fs.VarPF(&flagValue{unit: s.Unit}, s.Flag, "", s.Usage)
		f.DefValue = s.Default
		if s.Unit == UnitBool {
			f.NoOptDefVal = "true"
		}
	}
}

// Load returns the configuration: Default, overridden by the TOML file
// named by --config (or SWITCHBOARD_CONFIG), overridden by environ's
// SWITCHBOARD_ variables, overridden by the flags set on fs (which must be
// parsed, and defined by Flags). A key of the file that is no setting is
// an error; every bad value is reported at once. It does not validate:
// call Config.Validate.
func Load(fs *pflag.FlagSet, environ []string) (Config, error) {
	byKey, byEnv, byFlag := map[string]Setting{}, map[string]string{}, map[string]string{}
	for _, s := range Settings() {
		byKey[s.Key], byEnv[s.Env], byFlag[s.Flag] = s, s.Key, s.Key
	}
	k := koanf.New(".")
	path, _ := fs.GetString(ConfigFlag)
	if path == "" {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, EnvPrefix+"CONFIG="); ok {
				path = v
			}
		}
	}
	if path != "" {
		if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
			return Config{}, fmt.Errorf("reading %s: %w", path, err)
		}
		var unknown []string
		for _, key := range k.Keys() {
			if m, ok := k.Get(key).(map[string]any); ok && len(m) == 0 {
				continue // a table with nothing in it, such as "[cluster]" alone
			}
			if _, ok := byKey[key]; !ok {
				unknown = append(unknown, key)
			}
		}
		if len(unknown) > 0 {
			return Config{}, fmt.Errorf("%s: unknown settings %s (docs/CONFIG.md lists them)", path, strings.Join(unknown, ", "))
		}
	}
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: func(name, v string) (string, any) { return byEnv[name], v },
		EnvironFunc:   func() []string { return environ },
	}), nil)
	if err != nil {
		return Config{}, err
	}
	err = k.Load(posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		return byFlag[f.Name], f.Value.String()
	}), nil)
	if err != nil {
		return Config{}, err
	}

	cfg := Default()
	var errs []error
	for _, s := range Settings() {
		if !k.Exists(s.Key) {
			continue
		}
		v := k.Get(s.Key)
		switch v.(type) {
		case map[string]any, []any:
			errs = append(errs, fmt.Errorf("%s (--%s, %s): want one value, got %v", s.Key, s.Flag, s.Env, v))
			continue
		}
		errs = append(errs, s.Set(&cfg, fmt.Sprint(v)))
	}
	return cfg, errors.Join(errs...)
}

// Print writes c, with its defaults applied, as a TOML file that Load
// reads back to the same configuration: every setting, by section, with
// its unit and default in a comment. A setting c leaves unset whose default
// is derived (from the machine, like loops, or from other settings, like
// rate-burst from rate) is written commented out, with the value it has
// here: uncommented, an edit of what it derives from, or the file on
// another machine, would keep the value derived here.
func Print(w io.Writer, c Config) error {
	given := c
	c = c.WithDefaults()
	var b strings.Builder
	b.WriteString("# Switchboard's configuration in force (switchboard serve --print-config).\n")
	b.WriteString("# Load it with --config FILE. Precedence: flags > " + EnvPrefix + "* variables > this file > defaults.\n")
	b.WriteString("# Every setting, its unit and why its default is what it is: docs/CONFIG.md.\n")
	settings := Settings()
	for _, sec := range sections {
		if sec != "" {
			fmt.Fprintf(&b, "\n[%s]\n", sec)
		}
		for _, s := range settings {
			if section(s) != sec {
				continue
			}
			line := fmt.Sprintf("%s = %s # %s; default %s", s.Flag, tomlValue(s, s.Get(&c)), s.Unit, s.Default)
			if derived(s, &given, &c) {
				line = "# " + line + "; derived here, left unset to stay derived"
			}
			b.WriteString(line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// derived reports whether s is unset in given and its value in full (given
// with its defaults applied) is not the default its documentation states
// as a value: one worked out from the machine or from other settings.
func derived(s Setting, given, full *Config) bool {
	zero := s.Get(&Config{})
	if s.Get(given) != zero || s.Get(full) == zero {
		return false // set, so the file keeps it; or unset and zero, which means the default
	}
	var d Config
	if err := s.Set(&d, s.Default); err != nil {
		return true // a default in words ("2 × rate")
	}
	return s.Get(&d) != s.Get(full)
}

// section returns the file section of s, "" for the process's own.
func section(s Setting) string {
	sec, _, ok := strings.Cut(s.Key, ".")
	if !ok {
		return ""
	}
	return sec
}

// tomlValue writes v as a TOML value: numbers and booleans bare, the rest
// (durations and byte counts with their units included) quoted.
func tomlValue(s Setting, v string) string {
	switch s.Unit {
	case UnitCount, UnitRate, UnitBool:
		return v
	}
	return strconv.Quote(v)
}

// Usage writes every setting for --help: by section, each flag with its
// unit, what it does, its default and its environment variable.
func Usage(w io.Writer) {
	settings := Settings()
	titles := map[string]string{"": "Process", "storage": "Storage (mailboxes on disk)", "delivery": "Delivery (routing)", "gateway": "Gateway (client connections)", "cluster": "Cluster (nodes over NATS; docs/CLUSTER.md)"}
	for _, sec := range sections {
		fmt.Fprintf(w, "\n%s:\n", titles[sec])
		for _, s := range settings {
			if section(s) != sec {
				continue
			}
			fmt.Fprintf(w, "  --%s %s\n", s.Flag, s.Unit)
			fmt.Fprintf(w, "%s", wrap(s.Usage+" (default "+s.Default+"; "+s.Env+")", "        ", 80))
		}
	}
}

// wrap breaks text into lines of at most width runes after indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}

// Markdown writes the settings as docs/CONFIG.md's tables, one per
// section.
func Markdown(w io.Writer) {
	settings := Settings()
	for _, sec := range sections {
		title := "Process (top of the file, no section)"
		if sec != "" {
			title = "`[" + sec + "]`"
		}
		fmt.Fprintf(w, "\n### %s\n\n| flag | env | unit | default | what, and why that default |\n|---|---|---|---|---|\n", title)
		var rows []string
		for _, s := range settings {
			if section(s) == sec {
				rows = append(rows, fmt.Sprintf("| `--%s` | `%s` | %s | %s | %s |", s.Flag, s.Env, s.Unit, s.Default, strings.ReplaceAll(s.Usage, "|", `\|`)))
			}
		}
		fmt.Fprintln(w, strings.Join(rows, "\n"))
	}
}
