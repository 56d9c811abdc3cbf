package top

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	tea "charm.land/bubbletea/v2"
)

// Defaults and bounds of Config.
const (
	// DefaultEvery is one refresh a second: queues move within seconds
	// under overload, and a scrape costs a server well under a millisecond.
	DefaultEvery = time.Second
	// MinEvery keeps top from becoming a load of its own.
	MinEvery = 100 * time.Millisecond
	// MaxServers is the most servers one screen shows: a column each, and
	// more than 16 do not fit a wide terminal.
	MaxServers = 16
	// minTimeout and maxTimeout bound a scrape's timeout, which is Every
	// otherwise: a server busy enough to take a second over its metrics is
	// not down, and one that has not answered in 5 s is, for an
	// operator's purposes. A slow round delays the next; it never overlaps it.
	minTimeout = time.Second
	maxTimeout = 5 * time.Second
)

// Config is what top watches.
type Config struct {
	// Addrs are the servers' admin listeners (host:port, or a URL of their
	// /metrics); at least one, at most MaxServers.
	Addrs []string
	// Every is the time between scrapes; zero means DefaultEvery; at least
	// MinEvery. It is also each scrape's timeout, held between 1 s and 5 s.
	Every time.Duration
	// Now stamps samples; nil means time.Now.
	Now func() time.Time
}

// Validate fills the defaults of c and reports every invalid value.
func (c *Config) Validate() error {
	if c.Every == 0 {
		c.Every = DefaultEvery
	}
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("no server address"))
	}
	if len(c.Addrs) > MaxServers {
		errs = append(errs, fmt.Errorf("%d servers: at most %d fit one screen", len(c.Addrs), MaxServers))
	}
	for _, a := range c.Addrs {
		if a == "" {
			errs = append(errs, errors.New("an empty server address"))
		}
	}
	if c.Every < MinEvery {
		errs = append(errs, fmt.Errorf("refresh every %v: at least %v", c.Every, MinEvery))
	}
	return errors.Join(errs...)
}

// Scraper returns the scraper of c: one HTTP client whose timeout is the
// refresh interval, held between 1 s and 5 s.
func (c Config) Scraper() Scraper {
	return Scraper{Client: &http.Client{Timeout: min(max(c.Every, minTimeout), maxTimeout)}, Now: c.Now}
}

// Model is the live screen: it scrapes every server each Every and draws
// the frame of the last two rounds. Build it with NewModel; run it with
// tea.NewProgram.
type Model struct {
	cfg      Config
	scraper  Scraper
	prev     []Sample
	cur      []Sample
	scrapes  int
	quitting bool
}

// NewModel returns the model of a validated cfg.
func NewModel(cfg Config) Model {
	return Model{cfg: cfg, scraper: cfg.Scraper()}
}

// scrapedMsg carries one round of samples, in the order of Config.Addrs.
type scrapedMsg []Sample

// tickMsg asks for the next round.
type tickMsg time.Time

// scrape is the command that reads every server once.
func (m Model) scrape() tea.Msg {
	return scrapedMsg(m.scraper.ScrapeAll(context.Background(), m.cfg.Addrs))
}

// Init starts the first round.
func (m Model) Init() tea.Cmd { return m.scrape }

// Update takes a round of samples (and schedules the next), a tick (and
// scrapes), or q, Esc or Ctrl-C (and quits).
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case scrapedMsg:
		m.prev, m.cur = m.cur, msg
		m.scrapes++
		return m, tea.Tick(m.cfg.Every, func(t time.Time) tea.Msg { return tickMsg(t) })
	case tickMsg:
		return m, m.scrape
	case tea.KeyPressMsg:
		switch msg.String() {
		case "q", "esc", "ctrl+c":
			m.quitting = true
			return m, tea.Quit
		}
	}
	return m, nil
}

// frame is the frame of the last two rounds; nil before the first.
func (m Model) frame() *Frame {
	if m.cur == nil {
		return nil
	}
	fr := NewFrame(m.prev, m.cur, m.cfg.Every)
	return &fr
}

// Render draws the model's screen with styles s.
func (m Model) Render(s Styles) string {
	fr := m.frame()
	if fr == nil {
		return "switchboard top: reading " + fmt.Sprint(m.cfg.Addrs) + "…\n"
	}
	out := fr.Render(s)
	if m.scrapes < 2 {
		out += "\nrates after the next scrape"
	}
	return out + "\nq quits\n"
}

// View draws the screen in colour on the terminal's alternate screen.
func (m Model) View() tea.View {
	if m.quitting {
		return tea.NewView("")
	}
	v := tea.NewView(m.Render(Colours()))
	v.AltScreen = true
	return v
}

// Run draws the live screen of a validated cfg in the terminal until the
// user quits.
func Run(cfg Config) error {
	_, err := tea.NewProgram(NewModel(cfg)).Run()
	return err
}
