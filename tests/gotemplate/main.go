// Command gotemplate executes an Ollama chat TEMPLATE with Go's text/template, the way Ollama
// does (template/template.go `Execute`), and prints the prompt it renders.
//
//	gotemplate < request.json
//
// request.json holds the template and the chat request's messages and tools: {"template":
// "...", "messages": [{"role": ..., "content": ...}], "tools": [...]}. Like Ollama, the program collates the messages (system
// ones joined into .System, consecutive messages of one role merged with a blank line) and
// runs the template on .System, .Messages (.Role, .Content, ...), .Tools, .Response (empty:
// the model writes it), .Think, .ThinkLevel and .IsThinkSet: the chat path Ollama takes for
// every template that uses .Messages, as the Modelfile's templates do.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type message struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Thinking  string `json:"thinking,omitempty"`
	ToolCalls []any  `json:"tool_calls,omitempty"`
	ToolName  string `json:"tool_name,omitempty"`
}

type request struct {
	Template string    `json:"template"`
	Messages []message `json:"messages"`
	Tools    []any     `json:"tools"`
}

// The functions Ollama adds to every template (template/template.go `funcs`) that do not
// depend on the clock.
var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

func collate(messages []message) (string, []*message) {
	var system []string
	var collated []*message
	for i := range messages {
		m := messages[i]
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == m.Role {
			collated[len(collated)-1].Content += "\n\n" + m.Content
		} else {
			collated = append(collated, &m)
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func run() error {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(req.Template)
	if err != nil {
		return err
	}
	system, messages := collate(req.Messages)
	return tmpl.Execute(os.Stdout, map[string]any{"System": system, "Messages": messages,
		"Tools": req.Tools, "Response": "", "Think": false, "ThinkLevel": "",
		"IsThinkSet": false})
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gotemplate:", err)
		os.Exit(1)
	}
}
