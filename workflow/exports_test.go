package workflow_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/workflow"
)

// Package workflow is read by definition authors and embedded by other
// programs' code: what it exports (signatures, exported fields, types of
// exported variables) names no type of certflow's internal packages, which
// such code could not name. It converts at its edges instead (KeySpec).
func TestExportsNoInternalType(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range pkgs {
		for name, file := range pkg.Files {
			internal := map[string]bool{} // import names of internal packages
			for _, imp := range file.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if !strings.Contains(p, "/internal/") {
					continue
				}
				local := path.Base(p)
				if imp.Name != nil {
					local = imp.Name.Name
				}
				internal[local] = true
			}
			check := func(what string, n ast.Node) {
				if n == nil {
					return
				}
				ast.Inspect(n, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok {
						if id, ok := sel.X.(*ast.Ident); ok && internal[id.Name] {
							t.Errorf("%s: %s exposes %s.%s", fset.Position(sel.Pos()), what, id.Name, sel.Sel.Name)
						}
					}
					return true
				})
			}
			for _, decl := range file.Decls {
				switch d := decl.(type) {
				case *ast.FuncDecl:
					if d.Name.IsExported() && (d.Recv == nil || exportedReceiver(d.Recv)) {
						check(name+": func "+d.Name.Name, d.Type)
					}
				case *ast.GenDecl:
					for _, spec := range d.Specs {
						switch s := spec.(type) {
						case *ast.TypeSpec:
							if s.Name.IsExported() {
								checkType(check, "type "+s.Name.Name, s.Type)
							}
						case *ast.ValueSpec:
							for _, n := range s.Names {
								if n.IsExported() {
									check("var "+n.Name, s.Type)
								}
							}
						}
					}
				}
			}
		}
	}
}

// checkType checks an exported type: a struct's exported (and embedded)
// fields, an interface's exported methods, anything else whole.
func checkType(check func(string, ast.Node), what string, typ ast.Expr) {
	switch tt := typ.(type) {
	case *ast.StructType:
		for _, f := range tt.Fields.List {
			if len(f.Names) == 0 {
				check(what+" (embedded)", f.Type)
			}
			for _, n := range f.Names {
				if n.IsExported() {
					check(what+"."+n.Name, f.Type)
				}
			}
		}
	case *ast.InterfaceType:
		for _, m := range tt.Methods.List {
			if len(m.Names) == 0 || m.Names[0].IsExported() {
				check(what+" method", m.Type)
			}
		}
	default:
		check(what, typ)
	}
}

func exportedReceiver(recv *ast.FieldList) bool {
	typ := recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if idx, ok := typ.(*ast.IndexExpr); ok {
		typ = idx.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

// workflow.KeySpec stands for pki.KeySpec at the API's and the worker's
// edges: the two convert into each other and keep one JSON form, the one
// stored in request records.
func TestKeySpecConvertsToPKIsWithTheSameJSON(t *testing.T) {
	t.Parallel()
	for _, k := range []pki.KeySpec{{Type: "RSA", Bits: 2048}, {Type: "ECC", Bits: 256, Curve: "P-256"}, {Type: "Ed25519", Bits: 256}} {
		ours, _ := json.Marshal(workflow.KeySpec(k))
		theirs, _ := json.Marshal(k)
		if string(ours) != string(theirs) {
			t.Errorf("workflow.KeySpec JSON %s, pki.KeySpec JSON %s", ours, theirs)
		}
		var back workflow.KeySpec
		if err := json.Unmarshal(theirs, &back); err != nil || pki.KeySpec(back) != k {
			t.Errorf("%s read back as %+v (%v)", theirs, back, err)
		}
	}
}
