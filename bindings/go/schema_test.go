package mpsupervisor

// The Go types against the library's JSON Schemas (../../schema/*.schema.json, generated from
// the Rust types): every key of a schema must be a json-tagged field of the Go type at the same
// place and every json-tagged field a key of the schema, with a compatible type (string, bool,
// integer, number, array, object, nullable); every closed set of strings that a named Go
// string type stands for (Readiness, EventKind, ...) must be that type's constants, both ways;
// and every event kind must have its Data type in eventData, with exactly its fields.

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// shape is what a schema node allows, with its $refs followed and its oneOf/anyOf variants
// merged: the union of their types, properties and string values.
type shape struct {
	any        bool            // no constraint at all: any JSON value
	types      map[string]bool // JSON types, "null" included
	signed     bool            // an integer format that allows negative numbers
	values     map[string]bool // the closed set of strings it allows, when openString is false
	openString bool            // some variant allows any string
	props      map[string]*prop
	items      *shape // of an array
	mapValues  *shape // of an object used as a map (additionalProperties)
	defaultNil bool   // its default is null
}

type prop struct {
	shape    *shape
	required bool
}

type schemaDoc struct {
	name string
	root map[string]interface{}
}

func loadSchema(name string) (*schemaDoc, error) {
	data, err := os.ReadFile(filepath.Join("..", "..", "schema", name+".schema.json"))
	if err != nil {
		return nil, err
	}
	var root map[string]interface{}
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s.schema.json: %v", name, err)
	}
	return &schemaDoc{name: name, root: root}, nil
}

func (d *schemaDoc) def(ref string) map[string]interface{} {
	const prefix = "#/$defs/"
	defs, _ := d.root["$defs"].(map[string]interface{})
	node, ok := defs[strings.TrimPrefix(ref, prefix)].(map[string]interface{})
	if !strings.HasPrefix(ref, prefix) || !ok {
		panic(fmt.Sprintf("%s.schema.json: unresolvable $ref %q", d.name, ref))
	}
	return node
}

func (d *schemaDoc) shapeOf(node map[string]interface{}) *shape {
	sh := &shape{types: map[string]bool{}, values: map[string]bool{}, props: map[string]*prop{}}
	d.merge(sh, node)
	if def, ok := node["default"]; ok && def == nil {
		sh.defaultNil = true
	}
	return sh
}

// merge adds what node allows to sh.
func (d *schemaDoc) merge(sh *shape, node map[string]interface{}) {
	constrained := false
	if ref, ok := node["$ref"].(string); ok {
		constrained = true
		d.merge(sh, d.def(ref))
	}
	var types []string
	switch ty := node["type"].(type) {
	case string:
		types = []string{ty}
	case []interface{}:
		for _, t := range ty {
			types = append(types, t.(string))
		}
	}
	closed := false
	if c, ok := node["const"]; ok {
		constrained, closed = true, true
		if s, ok := c.(string); ok {
			sh.types["string"], sh.values[s] = true, true
		}
	}
	if e, ok := node["enum"].([]interface{}); ok {
		constrained, closed = true, true
		for _, v := range e {
			if s, ok := v.(string); ok {
				sh.types["string"], sh.values[s] = true, true
			}
		}
	}
	for _, t := range types {
		constrained = true
		sh.types[t] = true
		if t == "string" && !closed {
			sh.openString = true
		}
	}
	if f, ok := node["format"].(string); ok && strings.HasPrefix(f, "int") {
		sh.signed = true
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if variants, ok := node[key].([]interface{}); ok {
			constrained = true
			for _, v := range variants {
				d.mergeVariant(sh, v.(map[string]interface{}))
			}
		}
	}
	required := map[string]bool{}
	if r, ok := node["required"].([]interface{}); ok {
		for _, name := range r {
			required[name.(string)] = true
		}
	}
	if props, ok := node["properties"].(map[string]interface{}); ok {
		constrained = true
		sh.types["object"] = true
		for name, p := range props {
			ps := d.shapeOf(p.(map[string]interface{}))
			if old, ok := sh.props[name]; ok {
				mergeShape(old.shape, ps)
				old.required = old.required && required[name]
			} else {
				sh.props[name] = &prop{shape: ps, required: required[name]}
			}
		}
	}
	if items, ok := node["items"].(map[string]interface{}); ok {
		constrained = true
		if sh.items == nil {
			sh.items = d.shapeOf(items)
		} else {
			mergeShape(sh.items, d.shapeOf(items))
		}
	}
	if values, ok := node["additionalProperties"].(map[string]interface{}); ok {
		constrained = true
		if sh.mapValues == nil {
			sh.mapValues = d.shapeOf(values)
		} else {
			mergeShape(sh.mapValues, d.shapeOf(values))
		}
	}
	if !constrained {
		sh.any = true
	}
}

// mergeVariant adds one oneOf/anyOf variant: its properties are never required in the union
// (another variant may lack them).
func (d *schemaDoc) mergeVariant(sh *shape, node map[string]interface{}) {
	v := d.shapeOf(node)
	for _, p := range v.props {
		p.required = false
	}
	mergeShape(sh, v)
}

func mergeShape(into, from *shape) {
	into.any = into.any || from.any
	into.signed = into.signed || from.signed
	into.openString = into.openString || from.openString
	for t := range from.types {
		into.types[t] = true
	}
	for v := range from.values {
		into.values[v] = true
	}
	for name, p := range from.props {
		if old, ok := into.props[name]; ok {
			mergeShape(old.shape, p.shape)
			old.required = old.required && p.required
		} else {
			into.props[name] = &prop{shape: p.shape, required: p.required}
		}
	}
	if from.items != nil {
		if into.items == nil {
			into.items = from.items
		} else {
			mergeShape(into.items, from.items)
		}
	}
	if from.mapValues != nil {
		if into.mapValues == nil {
			into.mapValues = from.mapValues
		} else {
			mergeShape(into.mapValues, from.mapValues)
		}
	}
}

func (sh *shape) jsonTypes() []string {
	var out []string
	for t := range sh.types {
		if t != "null" {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// checker collects the differences between Go types and schemas.
type checker struct {
	consts map[string][]string // named string type -> the values of its constants
	diffs  map[string]bool
}

func newChecker(t *testing.T) *checker {
	consts, err := packageStringConsts(".")
	if err != nil {
		t.Fatal(err)
	}
	return &checker{consts: consts, diffs: map[string]bool{}}
}

func (c *checker) differ(format string, args ...interface{}) {
	c.diffs[fmt.Sprintf(format, args...)] = true
}

func (c *checker) report(t *testing.T) {
	t.Helper()
	var all []string
	for d := range c.diffs {
		all = append(all, d)
	}
	sort.Strings(all)
	for _, d := range all {
		t.Error(d)
	}
}

var (
	rawMessageType = reflect.TypeOf(json.RawMessage(nil))
	marshalerType  = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	unmarshalType  = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	thisPackage    = reflect.TypeOf(Group{}).PkgPath()
)

// compare checks the Go type t of the value at path against sh. omitempty and required are
// those of the field that holds it (a nil pointer of an omitempty field that the schema does
// not require is "absent", not null).
func (c *checker) compare(path string, t reflect.Type, sh *shape, omitempty, required bool) {
	nullable := sh.types["null"]
	switch t.Kind() {
	case reflect.Ptr, reflect.Slice, reflect.Map, reflect.Interface:
	default:
		// A field left out when empty whose default is null says null by its absence.
		if nullable && !sh.any && !(omitempty && sh.defaultNil) {
			c.differ("%s: the schema allows null, but Go type %s cannot hold it (make it a pointer)", path, t)
		}
	}
	if t.Kind() == reflect.Ptr {
		if !nullable && !sh.any && !(omitempty && !required) {
			c.differ("%s: Go type %s can be nil, which is null, but the schema does not allow null", path, t)
		}
		t = t.Elem()
	}
	if sh.any {
		if t.Kind() != reflect.Interface && t != rawMessageType {
			c.differ("%s: the schema allows any JSON value, but Go type %s does not (use interface{} or json.RawMessage)", path, t)
		}
		return
	}
	types := sh.jsonTypes()
	// Several JSON types but no object (a user as a name or a number; a limit as a number,
	// "infinity" or [soft, hard]): a named type with its own MarshalJSON and UnmarshalJSON,
	// which choose among them.
	if len(types) > 1 && !sh.types["object"] && t.Name() != "" && t.Implements(marshalerType) &&
		reflect.PtrTo(t).Implements(unmarshalType) {
		return
	}
	if t.Kind() == reflect.Interface || t == rawMessageType {
		c.differ("%s: Go type %s takes any JSON value, but the schema allows only %s", path, t, strings.Join(types, ", "))
		return
	}
	// A string or an object (such as Output): a struct with its own MarshalJSON whose
	// json-tagged fields are the object's keys.
	if len(types) == 2 && types[0] == "object" && types[1] == "string" {
		if t.Kind() != reflect.Struct || !t.Implements(marshalerType) {
			c.differ("%s: the schema allows a string or an object; Go type %s is not a struct with a MarshalJSON method", path, t)
			return
		}
		c.compareStruct(path, t, sh, nil)
		return
	}
	// An integer or a string (such as a limit: 1048576, "512M", "max"): a string type with its
	// own MarshalJSON, which sends digits as a number.
	if len(types) == 2 && types[0] == "integer" && types[1] == "string" {
		if t.Kind() != reflect.String || !t.Implements(marshalerType) {
			c.differ("%s: the schema allows an integer or a string; Go type %s is not a string type with a MarshalJSON method", path, t)
		}
		return
	}
	if len(types) != 1 {
		c.differ("%s: the schema allows %s; Go type %s cannot be all of them", path, strings.Join(types, " or "), t)
		return
	}
	switch types[0] {
	case "string":
		if t.Kind() != reflect.String {
			c.differ("%s: the schema says string, Go type is %s", path, t)
			return
		}
		c.compareEnum(path, t, sh)
	case "boolean":
		if t.Kind() != reflect.Bool {
			c.differ("%s: the schema says boolean, Go type is %s", path, t)
		}
	case "integer":
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if sh.signed {
				c.differ("%s: the schema's integer may be negative, Go type %s is unsigned", path, t)
			}
		default:
			c.differ("%s: the schema says integer, Go type is %s", path, t)
		}
	case "number":
		if t.Kind() != reflect.Float32 && t.Kind() != reflect.Float64 {
			c.differ("%s: the schema says number, Go type is %s", path, t)
		}
	case "array":
		if (t.Kind() != reflect.Slice && t.Kind() != reflect.Array) || t.Elem().Kind() == reflect.Uint8 {
			c.differ("%s: the schema says array, Go type is %s", path, t)
			return
		}
		if sh.items != nil {
			c.compare(path+"[]", t.Elem(), sh.items, false, true)
		}
	case "object":
		if len(sh.props) == 0 && sh.mapValues != nil {
			if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String {
				c.differ("%s: the schema says an object of any keys, Go type is %s (want a map)", path, t)
				return
			}
			c.compare(path+"{}", t.Elem(), sh.mapValues, false, true)
			return
		}
		if t.Kind() != reflect.Struct {
			c.differ("%s: the schema says an object with keys, Go type is %s (want a struct)", path, t)
			return
		}
		c.compareStruct(path, t, sh, nil)
	default:
		c.differ("%s: the schema says %s, which this test does not know", path, types[0])
	}
}

// typeName is t as Go writes it, but for an unnamed struct, which would list its fields.
func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Struct && t.Name() == "" {
		return "struct{...}"
	}
	return t.String()
}

type goField struct {
	name      string // Go name
	typ       reflect.Type
	omitempty bool
}

// jsonFields are the fields encoding/json reads and writes, by JSON name.
func jsonFields(t reflect.Type) map[string]goField {
	out := map[string]goField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, options, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for n, inner := range jsonFields(f.Type) {
				out[n] = inner
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = goField{name: f.Name, typ: f.Type, omitempty: strings.Contains(options, "omitempty")}
	}
	return out
}

// compareStruct compares the json fields of t with the properties of sh, both ways (but for
// the keys in skip).
func (c *checker) compareStruct(path string, t reflect.Type, sh *shape, skip map[string]bool) {
	fields := jsonFields(t)
	for name, p := range sh.props {
		if skip[name] {
			continue
		}
		f, ok := fields[name]
		if !ok {
			c.differ("%s: key %q of the schema is missing from Go type %s", path, name, typeName(t))
			continue
		}
		c.compare(path+"."+name, f.typ, p.shape, f.omitempty, p.required)
	}
	for name, f := range fields {
		if _, ok := sh.props[name]; !ok && !skip[name] {
			c.differ("%s: Go field %s.%s (json %q) is not a key of the schema", path, typeName(t), f.name, name)
		}
	}
}

// compareEnum checks that a named Go string type has exactly the schema's values as constants.
func (c *checker) compareEnum(path string, t reflect.Type, sh *shape) {
	if t.PkgPath() != thisPackage || t.Name() == "" {
		return // a plain string: nothing to compare
	}
	if sh.openString {
		c.differ("%s: Go type %s is a set of constants, but the schema allows any string", path, t)
		return
	}
	consts := map[string]bool{}
	for _, v := range c.consts[t.Name()] {
		consts[v] = true
		if !sh.values[v] {
			c.differ("%s: Go constant %q of type %s is not a value of the schema", path, v, t)
		}
	}
	for v := range sh.values {
		if !consts[v] {
			c.differ("%s: value %q of the schema has no Go constant of type %s", path, v, t)
		}
	}
}

// packageStringConsts reads the package's sources (not its tests): every constant declared
// with a named type and a string literal, by type name.
func packageStringConsts(dir string) (map[string][]string, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, pkg := range pkgs {
		for _, file := range pkg.Files {
			for _, decl := range file.Decls {
				gen, ok := decl.(*ast.GenDecl)
				if !ok || gen.Tok != token.CONST {
					continue
				}
				for _, spec := range gen.Specs {
					vs := spec.(*ast.ValueSpec)
					typ, ok := vs.Type.(*ast.Ident)
					if !ok {
						continue
					}
					for _, value := range vs.Values {
						if lit, ok := value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							s, err := strconv.Unquote(lit.Value)
							if err != nil {
								return nil, err
							}
							out[typ.Name] = append(out[typ.Name], s)
						}
					}
				}
			}
		}
	}
	return out, nil
}

// The Go type of each schema's root.
var schemaRoots = []struct {
	name string
	typ  reflect.Type
}{
	{"groups", reflect.TypeOf([]Group(nil))},
	{"restart-options", reflect.TypeOf(RolloutOptions{})},
	{"logging", reflect.TypeOf(LoggingSettings{})},
	{"snapshot", reflect.TypeOf(map[string][]Worker(nil))},
	{"status", reflect.TypeOf(Status{})},
	{"events", reflect.TypeOf([]Event(nil))},
}

func (c *checker) checkRoot(t *testing.T, name string, typ reflect.Type) {
	doc, err := loadSchema(name)
	if err != nil {
		t.Fatal(err)
	}
	c.compare(name, typ, doc.shapeOf(doc.root), false, true)
}

// checkEventKinds compares each kind of $defs.Event.oneOf with its type in eventData.
func (c *checker) checkEventKinds(t *testing.T, data map[EventKind]func() EventData) {
	doc, err := loadSchema("events")
	if err != nil {
		t.Fatal(err)
	}
	variants, _ := doc.def("#/$defs/Event")["oneOf"].([]interface{})
	if len(variants) == 0 {
		t.Fatal("events.schema.json: $defs.Event has no oneOf variants")
	}
	seen := map[EventKind]bool{}
	for _, v := range variants {
		node := v.(map[string]interface{})
		props, _ := node["properties"].(map[string]interface{})
		kindNode, _ := props["kind"].(map[string]interface{})
		kind, ok := kindNode["const"].(string)
		if !ok {
			t.Fatalf("events.schema.json: an Event variant without a kind const: %v", node)
		}
		seen[EventKind(kind)] = true
		newData, ok := data[EventKind(kind)]
		if !ok {
			c.differ("events[kind=%s]: the event kind has no Data type in eventData", kind)
			continue
		}
		d := newData()
		if d.EventKind() != EventKind(kind) {
			c.differ("events[kind=%s]: its Data type %T says its kind is %q", kind, d, d.EventKind())
		}
		c.compareStruct("events[kind="+kind+"]", reflect.TypeOf(d).Elem(), doc.shapeOf(node), map[string]bool{"kind": true})
	}
	for kind := range data {
		if !seen[kind] {
			c.differ("events[kind=%s]: eventData has a Data type for a kind the schema does not have", kind)
		}
	}
}

func TestGoTypesMatchTheSchemas(t *testing.T) {
	c := newChecker(t)
	for _, root := range schemaRoots {
		c.checkRoot(t, root.name, root.typ)
	}
	c.checkEventKinds(t, eventData)
	c.report(t)
}

// The checker itself: types that differ from the schema in each way are reported, by name.
func TestSchemaCheckNamesWhatDiffers(t *testing.T) {
	c := newChecker(t)
	var fields []reflect.StructField
	group := reflect.TypeOf(Group{})
	for i := 0; i < group.NumField(); i++ {
		f := group.Field(i)
		switch f.Name {
		case "KillMode": // missing
		case "Workers": // another type
			f.Type = reflect.TypeOf("")
			fields = append(fields, f)
		case "Cwd": // null can no longer be said by leaving it out
			f.Tag = `json:"cwd"`
			fields = append(fields, f)
		default:
			fields = append(fields, f)
		}
	}
	fields = append(fields, reflect.StructField{Name: "Extra", Type: reflect.TypeOf(0), Tag: `json:"extra,omitempty"`})
	c.checkRoot(t, "groups", reflect.SliceOf(reflect.StructOf(fields)))

	fewerKinds := map[EventKind]func() EventData{}
	for kind, f := range eventData {
		if kind != EventWorkerStatus {
			fewerKinds[kind] = f
		}
	}
	fewerKinds["no_such_kind"] = eventData[EventWorkerReady]
	c.checkEventKinds(t, fewerKinds)

	want := []string{
		`groups[]: key "kill_mode" of the schema is missing from Go type`,
		`groups[].workers: the schema says integer, Go type is string`,
		`groups[].cwd: the schema allows null, but Go type string cannot hold it`,
		`groups[]: Go field struct{...}.Extra (json "extra") is not a key of the schema`,
		`events[kind=worker_status]: the event kind has no Data type in eventData`,
		`events[kind=no_such_kind]: eventData has a Data type for a kind the schema does not have`,
	}
	var got []string
	for d := range c.diffs {
		got = append(got, d)
	}
	sort.Strings(got)
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("no difference reported containing %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != 6 {
		t.Errorf("%d differences reported, want 6:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// Schema returns the files of schema/ byte for byte, and names the known schemas otherwise.
func TestSchemaReturnsTheRepositorysFiles(t *testing.T) {
	for _, root := range schemaRoots {
		got, err := Schema(root.name)
		if err != nil {
			t.Fatalf("Schema(%q): %v", root.name, err)
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "schema", root.name+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("Schema(%q) differs from schema/%s.schema.json", root.name, root.name)
		}
	}
	_, err := Schema("nope")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument || !strings.Contains(e.Message, "groups") {
		t.Errorf(`Schema("nope") = %v; want ErrInvalidArgument naming the known schemas`, err)
	}
}
