package checklists

import (
	"strings"
	"testing"
)

// A runbook command shows and runs for the server being recovered; names drconsole does
// not know are left to the shell as written.
func TestCommandTemplates(t *testing.T) {
	vars := map[string]string{"DB_HOST": "db1.internal", "DB_USER": "ops", "DB_NAME": "orders", "S3_BUCKET": "orders-backups", "DB_PORT": ""}
	c := Command{Run: "cd $PROJECT_ROOT && psql -h $DB_HOST -p ${DB_PORT} -U ${DB_USER} -d $DB_NAME; aws s3 ls s3://$S3_BUCKET/ $HOME"}.Expand(vars)
	want := "cd $PROJECT_ROOT && psql -h db1.internal -p ${DB_PORT} -U ops -d orders; aws s3 ls s3://orders-backups/ $HOME"
	if c.Run != want {
		t.Errorf("expanded:\n got %s\nwant %s", c.Run, want)
	}
	// The shipped runbook's legacy restore script is for reference only, everywhere.
	for _, sc := range Default().Scenarios {
		for _, st := range sc.Steps {
			for _, c := range st.Commands {
				if (strings.Contains(c.Run, "restore.sh") || strings.Contains(c.Run, "your_password")) && !c.Reference {
					t.Errorf("%s / %s: the legacy restore script can be run: %q", sc.ID, st.Title, c.Run)
				}
			}
		}
	}
	if len(Default().Checks) == 0 {
		t.Error("the shipped runbook carries no application checks")
	}
}
