// DuckDB side of trialmesh-bench: loads the generated LUNG-7 CSV into an in-memory DuckDB
// database and times the four benchmark queries. Run by trialmesh-bench through popen; usable
// alone:
//
//   node tools/bench/duckdb/bench.mjs --csv data.csv --runs 11 --threads 2
//
// Prints one JSON object on stdout: DuckDB version, load time, and per query and table layout
// the median wall time (ms) of `runs` timed runs after one warm-up run, plus the result rows
// so trialmesh-bench can check every engine computed the same answer.
//
// Two table layouts are timed, and trialmesh-bench compares against the faster one:
//   lung      - the types a DuckDB user would declare reading the CSV (VARCHAR codes, INTEGER,
//               DOUBLE, DATE);
//   lung_enum - compact types like trialmesh's (ENUM codes, TINYINT/SMALLINT numbers).
import { DuckDBInstance, version } from '@duckdb/node-api';

function parseArgs(argv) {
  const args = { csv: null, runs: 11, threads: 2 };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) || i + 1 >= argv.length) {
      throw new Error(`bench.mjs: unknown or incomplete option '${argv[i]}' ` +
                      '(expected --csv PATH --runs N --threads N)');
    }
    args[key] = key === 'csv' ? argv[i + 1] : Number(argv[i + 1]);
  }
  if (!args.csv) throw new Error('bench.mjs: --csv PATH is required');
  return args;
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Runs `sql` once to warm up, then `runs` times; returns the median and the last result rows.
async function timeQuery(conn, sql, runs) {
  let reader = await conn.runAndReadAll(sql);
  const times = [];
  for (let i = 0; i < runs; ++i) {
    const t0 = nowMs();
    reader = await conn.runAndReadAll(sql);
    times.push(nowMs() - t0);
  }
  return { ms: median(times), rows: reader.getRowsJson() };
}

function queries(table) {
  return {
    Q1: `SELECT count(*) AS n FROM ${table} WHERE age >= 65 AND sex = 'F'`,
    Q2: `SELECT arm, count(*) AS n, avg(bmi) AS mean, var_samp(bmi) AS var ` +
        `FROM ${table} GROUP BY arm ORDER BY arm`,
    // 10-year bins over [0, 120): bin = age // 10 (integer division).
    Q3: `SELECT age // 10 AS bin, count(*) AS n FROM ${table} ` +
        `WHERE age >= 0 AND age < 120 GROUP BY bin ORDER BY bin`,
    Q4: `SELECT arm, ecog, count(*) AS n FROM ${table} GROUP BY arm, ecog ` +
        `ORDER BY arm, ecog NULLS LAST`,
  };
}

async function main() {
  const args = parseArgs(process.argv);
  const instance = await DuckDBInstance.create(':memory:', { threads: String(args.threads) });
  const conn = await instance.connect();
  const csv = args.csv.replaceAll("'", "''");

  // Explicit types, NA and empty fields read as NULL.
  let t0 = nowMs();
  await conn.run(
      `CREATE TABLE lung AS SELECT SITEID AS site, ARM AS arm, SEX AS sex, AGE AS age, ` +
      `BMI AS bmi, "ph.ecog" AS ecog, "meal.cal" AS mealcal, BIOMARKER AS biomarker, ` +
      `AVAL AS time, EVENT AS event, RANDDT AS randdt, SMOKER AS smoker ` +
      `FROM read_csv('${csv}', header = true, delim = ',', quote = '"', ` +
      `nullstr = ['NA', ''], columns = {` +
      `'USUBJID': 'VARCHAR', 'SITEID': 'VARCHAR', 'ARM': 'VARCHAR', 'SEX': 'VARCHAR', ` +
      `'AGE': 'INTEGER', 'BMI': 'DOUBLE', 'ph.ecog': 'INTEGER', 'meal.cal': 'INTEGER', ` +
      `'BIOMARKER': 'DOUBLE', 'AVAL': 'INTEGER', 'EVENT': 'INTEGER', 'RANDDT': 'DATE', ` +
      `'SMOKER': 'VARCHAR'})`);
  const loadMs = nowMs() - t0;
  const count = (await conn.runAndReadAll('SELECT count(*) FROM lung')).getRowsJson()[0][0];

  t0 = nowMs();
  await conn.run(`CREATE TYPE arm_t AS ENUM ('PBO', 'TRT')`);
  await conn.run(`CREATE TYPE sex_t AS ENUM ('F', 'M')`);
  await conn.run(
      `CREATE TABLE lung_enum AS SELECT site, arm::arm_t AS arm, sex::sex_t AS sex, ` +
      `age::TINYINT AS age, bmi, ecog::TINYINT AS ecog, mealcal::SMALLINT AS mealcal, ` +
      `biomarker, time::SMALLINT AS time, event::TINYINT AS event, randdt, smoker FROM lung`);
  const enumMs = nowMs() - t0;

  const result = {
    version: version(),
    threads: args.threads,
    runs: args.runs,
    rows: Number(count),
    load_ms: loadMs,
    enum_convert_ms: enumMs,
    queries: {},
  };
  for (const [layout, table] of [['varchar', 'lung'], ['enum', 'lung_enum']]) {
    for (const [name, sql] of Object.entries(queries(table))) {
      const r = await timeQuery(conn, sql, args.runs);
      result.queries[name] ??= {};
      result.queries[name][layout] = r.ms;
      if (layout === 'varchar') result.queries[name].sql = sql;
      // Results as plain numbers/strings; both layouts give the same rows.
      result.queries[name].rows = r.rows.map((row) => row.map((v) => (v === null ? null : v)));
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench.mjs: ${e.message}\n`);
  process.exit(1);
});
