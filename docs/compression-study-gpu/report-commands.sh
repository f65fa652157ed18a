set -euo pipefail
E=target/release/exporter; S=runs/gpu-back/students; B=runs/gpu-study-bundles; OUT=docs/compression-study-gpu
mkdir -p $B $OUT
echo "$E prune --teacher $S/student-6-2-kd --trim-vocab data/en-fr --out runs/gpu-study/student-6-2-kd-trimmed --force"
$E prune --teacher $S/student-6-2-kd --trim-vocab data/en-fr --out runs/gpu-study/student-6-2-kd-trimmed --force
ex() { echo "$E export --model $1 --out $B/$2 --precision $3 --force"; $E export --model $1 --out $B/$2 --precision $3 --force; }
ex models/en-fr-teacher teacher fp32
ex $S/student-6-2-kd student-6-2-kd fp32
ex runs/gpu-study/student-6-2-kd-trimmed student-6-2-kd-trimmed fp32
ex $S/student-6-2-kd student-6-2-kd-int8 int8
ex runs/gpu-study/student-6-2-kd-trimmed student-6-2-kd-trimmed-int8 int8
echo "$E report --models teacher,student-6-2-kd,student-6-2-kd-trimmed,student-6-2-kd-int8,student-6-2-kd-trimmed-int8 --models-dir $B --test data/en-fr/test --out $OUT --threads 1 --batch-sizes 1,32 --device cpu"
$E report --models teacher,student-6-2-kd,student-6-2-kd-trimmed,student-6-2-kd-int8,student-6-2-kd-trimmed-int8 --models-dir $B --test data/en-fr/test --out $OUT --threads 1 --batch-sizes 1,32 --device cpu
