package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// client talks to a running certflow's API as one identity.
type client struct {
	base, token string
	http        *http.Client
}

func (c *client) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("x-keyfactor-requested-with", "APIClient")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ ErrorCode, Message string }
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, e.Message)
		}
		return fmt.Errorf("%s %s: %d", method, path, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// runApprove is `certflow pending`, `approve` and `deny`: an approver's
// tools over the API (Keyfactor's approval queue and instance endpoints).
func runApprove(cmd string, args []string, stdout, stderr io.Writer) error {
	synopsis := map[string]string{
		"pending": "[--url URL]",
		"approve": "[--url URL] [--comment C] ID ...",
		"deny":    "[--url URL] --comment C ID ...",
	}[cmd]
	about := map[string]string{
		"pending": "List what waits for your decision.",
		"approve": "Approve requests (request or instance ids) at the approval step they wait at.",
		"deny":    "Deny requests (request or instance ids); the comment, saying why, is required.",
	}[cmd] + "\nThe token is CERTFLOW_TOKEN (or CERTFLOW_ADMIN_TOKEN); the URL defaults to\nCERTFLOW_URL, else http://127.0.0.1:8080."
	fset := newFlagSet(cmd, synopsis, about, stderr)
	url := fset.String("url", cmp.Or(os.Getenv("CERTFLOW_URL"), "http://127.0.0.1:8080"), "certflow's API")
	comment := new(string)
	if cmd != "pending" {
		fset.StringVar(comment, "comment", "", "the decision's comment (required to deny)")
	}
	ids, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	if cmd == "pending" {
		if err := noArgs(fset, ids); err != nil {
			return err
		}
	} else if len(ids) == 0 {
		fmt.Fprintf(stderr, "certflow %s: name at least one request or instance id\n", cmd)
		fset.Usage()
		return exitCode(2)
	}
	if cmd == "deny" && strings.TrimSpace(*comment) == "" {
		fmt.Fprintln(stderr, "certflow deny: a comment is required: --comment \"why it is denied\" (the requester reads it)")
		return exitCode(2)
	}
	c := &client{base: strings.TrimSuffix(*url, "/"), token: cmp.Or(os.Getenv("CERTFLOW_TOKEN"), os.Getenv("CERTFLOW_ADMIN_TOKEN")), http: &http.Client{Timeout: 30 * time.Second}}
	if c.token == "" {
		return errors.New("set CERTFLOW_TOKEN to your API token")
	}
	if cmd == "pending" {
		return listPending(c, stdout)
	}
	failed := false
	for _, arg := range ids {
		id, err := c.decide(arg, cmd == "approve", strings.TrimSpace(*comment))
		switch {
		case err != nil:
			failed = true
			fmt.Fprintf(stdout, "%s: refused: %v\n", arg, err)
		case cmd == "approve":
			fmt.Fprintf(stdout, "request %d: approved\n", id)
		default:
			fmt.Fprintf(stdout, "request %d: denied\n", id)
		}
	}
	if failed {
		return exitCode(1)
	}
	return nil
}

// decide signals a decision on the step the request (a request id or an
// instance id) waits at, and returns the request id.
func (c *client) decide(arg string, approved bool, comment string) (int64, error) {
	var wait struct {
		Step string
	}
	var instance string
	id, err := strconv.ParseInt(arg, 10, 64)
	if err == nil {
		var req struct {
			CertificateInformation struct{ WorkflowInstanceId string }
			Wait                   *struct{ Step string }
		}
		if err := c.do("GET", "/Enrollment/Requests/"+arg, nil, &req); err != nil {
			return 0, err
		}
		instance = req.CertificateInformation.WorkflowInstanceId
		if req.Wait != nil {
			wait.Step = req.Wait.Step
		}
	} else {
		var inst struct {
			ReferenceId int64
			Wait        *struct{ Step string }
		}
		if err := c.do("GET", "/Workflow/Instances/"+arg, nil, &inst); err != nil {
			return 0, err
		}
		id, instance = inst.ReferenceId, arg
		if inst.Wait != nil {
			wait.Step = inst.Wait.Step
		}
	}
	if wait.Step == "" {
		return id, fmt.Errorf("request %d is not waiting for a decision", id)
	}
	body := map[string]any{"SignalKey": wait.Step + ".ApprovalStatus", "Data": map[string]any{"Approved": approved, "Comment": comment}}
	return id, c.do("POST", "/Workflow/Instances/"+instance+"/Signals", body, nil)
}

func listPending(c *client, stdout io.Writer) error {
	var list []struct {
		Id             string
		ReferenceId    int64
		InitiatingUser string
		Title          string
		Wait           *struct {
			Step      string
			Roles     []string
			Quorum    int
			Approvers []string
			Since     time.Time
			Deadline  time.Time
		}
	}
	if err := c.do("GET", "/Workflow/Instances/AssignedToMe?pq.returnLimit=500", nil, &list); err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "nothing waits for your decision")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tINSTANCE\tREQUESTER\tSTEP\tAPPROVALS\tWAITING SINCE\tDEADLINE")
	for _, in := range list {
		if in.Wait == nil {
			continue
		}
		deadline := "none"
		if !in.Wait.Deadline.IsZero() {
			deadline = in.Wait.Deadline.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", in.ReferenceId, in.Id, in.InitiatingUser, in.Wait.Step,
			len(in.Wait.Approvers), in.Wait.Quorum, in.Wait.Since.UTC().Format(time.RFC3339), deadline)
	}
	return tw.Flush()
}
