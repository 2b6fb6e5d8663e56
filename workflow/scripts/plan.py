"""Rule plan: the config -> predicted jobs, time, memory and disk per rule (CSV, text table, printed)."""

from tttnn import logs
from tttnn.cost.plan import format_table, make_plan, write_csv
from tttnn.io import write_text

logs.to_file(snakemake.log[0])
# this machine's rates (plan.cpu_calibration, or resources/calibration/cpu.yaml) are found by make_plan
result = make_plan(dict(snakemake.params.config), snakemake.input.calibration)
write_csv(result, snakemake.output.csv)
table = format_table(result)
write_text(table + "\n", snakemake.output.table)
print(f"\nplan of run {result['run']!r} ({snakemake.output.csv}):\n{table}\n", flush=True)
